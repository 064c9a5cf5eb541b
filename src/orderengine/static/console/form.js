// The order form: market, limit and sniper orders, with the quote previewed before sending.

import { call, describe } from "./api.js";
import { h, byId, toast } from "./dom.js";
import { decimal, validAmount } from "./format.js";
import { quoteCard } from "./timeline.js";

const PREVIEW_DELAY_MS = 300;
const HINTS = {
  market: "Executes at once, on the venue that pays most after fees and price impact.",
  limit: "Waits in pending until a venue pays at least the limit price (tokenOut per tokenIn) for the whole amount.",
  sniper: "Waits until a venue lists its token (type a new symbol), then buys at once. A limit price is optional.",
};

export class OrderForm {
  constructor(catalog, { onAccepted }) {
    this.catalog = catalog;
    this.onAccepted = onAccepted;
    this.form = byId("order-form");
    this.timer = null;
    this.asked = 0;
    this.form.addEventListener("input", () => this.changed());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.changed();
  }

  get type() {
    return this.form.elements.type.value;
  }

  /** Fill the token choices from the catalog, keeping what was chosen. */
  tokensChanged() {
    const select = byId("token-in");
    const chosen = select.value || "SOL";
    select.replaceChildren(...this.catalog.symbols().map((symbol) => h("option", { value: symbol }, symbol)));
    select.value = this.catalog.symbols().includes(chosen) ? chosen : "SOL";
    byId("token-list").replaceChildren(...this.catalog.symbols().map((symbol) => h("option", { value: symbol })));
    this.schedulePreview();
  }

  changed() {
    this.form.dataset.type = this.type;
    byId("type-hint").textContent = HINTS[this.type];
    byId("submit-order").textContent = `Place ${this.type} order`;
    byId("limit-price").placeholder = this.type === "limit" ? "required" : "optional";
    this.schedulePreview();
  }

  schedulePreview() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.preview(), PREVIEW_DELAY_MS);
  }

  /** Ask for a quote once the fields make one; say why not otherwise, with no request. */
  async preview() {
    const { tokenIn, tokenOut, amountIn } = this.values();
    const box = byId("preview");
    const token = this.catalog.token(tokenIn);
    if (!this.catalog.token(tokenOut)) {
      const waits = this.type === "sniper" && /^[A-Z0-9]{2,12}$/.test(tokenOut);
      box.replaceChildren(h("p", { class: "muted" }, waits ? `No venue lists ${tokenOut} yet: the sniper will wait for a listing.` : "Choose a token to buy."));
      return;
    }
    if (!token || tokenIn === tokenOut || !validAmount(amountIn, token.decimals)) {
      box.replaceChildren(h("p", { class: "muted" }, `Give an amount of ${tokenIn} (at most ${token ? token.decimals : 0} decimals) and another token to buy.`));
      return;
    }
    const asked = ++this.asked;
    const query = new URLSearchParams({ tokenIn, tokenOut, amountIn });
    try {
      const quote = await call("GET", `/api/quotes?${query}`);
      if (asked === this.asked) box.replaceChildren(previewOf(quote));
    } catch (error) {
      if (asked === this.asked) box.replaceChildren(h("p", { class: "error" }, describe(error)));
    }
  }

  values() {
    const get = (name) => this.form.elements[name].value.trim();
    return {
      tokenIn: get("tokenIn"),
      tokenOut: get("tokenOut").toUpperCase(),
      amountIn: get("amountIn"),
      slippageBps: get("slippageBps"),
      limitPrice: get("limitPrice"),
      expiresIn: get("expiresIn"),
    };
  }

  /** The order the form describes, as the API takes it. */
  order() {
    const values = this.values();
    const order = { type: this.type, tokenIn: values.tokenIn, tokenOut: values.tokenOut, amountIn: values.amountIn };
    if (values.slippageBps) order.slippageBps = /^\d+$/.test(values.slippageBps) ? Number(values.slippageBps) : values.slippageBps;
    if (this.type !== "market" && values.limitPrice) order.limitPrice = values.limitPrice;
    if (this.type !== "market" && values.expiresIn) {
      const expiresAt = new Date(Date.now() + Number(values.expiresIn) * 1000);
      if (!/^\d+$/.test(values.expiresIn) || Number.isNaN(expiresAt.getTime())) {
        throw new Error("expires in: a whole number of seconds");
      }
      order.expiresAt = expiresAt.toISOString();
    }
    return order;
  }

  async submit() {
    const error = byId("order-error");
    error.textContent = "";
    const button = byId("submit-order");
    button.disabled = true;
    try {
      const accepted = await call("POST", "/api/orders/execute", this.order());
      toast(`${accepted.type} order accepted: ${accepted.orderId.slice(0, 8)}`, "ok");
      this.onAccepted(accepted);
    } catch (failure) {
      error.textContent = describe(failure);
    } finally {
      button.disabled = false;
    }
  }
}

function previewOf(quote) {
  if (!quote.dex) {
    return h("div", {}, h("p", { class: "error" }, quote.reason), reasons(quote.unavailable));
  }
  return h(
    "div",
    {},
    h("p", { class: "reason" }, quote.reason),
    h("div", { class: "quotes" }, quote.quotes.map((found) => quoteCard(found, found.dex === quote.dex))),
    reasons(quote.unavailable),
    h("p", { class: "muted" }, `Best now: ${decimal(quote.quotes[0].amountOut)} ${quote.tokenOut} for ${quote.amountIn} ${quote.tokenIn}; prices move.`),
  );
}

function reasons(unavailable) {
  return Object.entries(unavailable || {}).map(([dex, why]) => h("p", { class: "muted" }, `${dex}: ${why}`));
}
