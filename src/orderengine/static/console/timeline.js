// An order's timeline, in a drawer: every event with its time, the quotes of each routing
// side by side with the chosen one marked and the reason, retries with their errors and
// delays, and what a waiting order waits for.

import { h, byId } from "./dom.js";
import { clock, decimal, duration, short } from "./format.js";
import { events, summary } from "./orders.js";
import { statusBadge } from "./table.js";

export class Timeline {
  constructor(book, { onCancel }) {
    this.book = book;
    this.onCancel = onCancel;
    this.openId = null;
    byId("timeline-close").addEventListener("click", () => this.close());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
  }

  open(id) {
    this.openId = id;
    byId("timeline").hidden = false;
    this.draw();
  }

  close() {
    this.openId = null;
    byId("timeline").hidden = true;
  }

  /** Draw again if the order shown changed. */
  changed(id) {
    if (id === this.openId) this.draw();
  }

  draw() {
    const order = this.book.get(this.openId);
    if (!order) return;
    const fields = order.fields;
    const seen = summary(order);
    byId("timeline-title").replaceChildren(
      `${fields.type || "order"} ${decimal(fields.amountIn, 9)} ${fields.tokenIn} → ${fields.tokenOut} `,
      statusBadge(seen.status, seen.waiting),
    );
    const cancel = h("button", { class: "cancel", type: "button", onclick: () => this.onCancel(order.id) }, "Cancel order");
    byId("timeline-body").replaceChildren(
      h("dl", { class: "facts" }, facts(order.id, fields, seen)),
      ...(seen.cancellable ? [cancel] : []),
      h("ol", { class: "events" }, eventItems(events(order))),
    );
  }
}

function facts(id, fields, seen) {
  const rows = [
    ["Order", id],
    ["Slippage", `${fields.slippageBps} bps`],
    ["Limit price", fields.limitPrice ? decimal(fields.limitPrice, 9) : null],
    ["Expires", fields.expiresAt ? new Date(fields.expiresAt).toLocaleString() : null],
    ["Venue", seen.dex],
    ["Executed price", seen.executedPrice],
    ["Amount out", seen.amountOut],
    ["Signature", seen.signature],
  ];
  return rows
    .filter(([, value]) => value)
    .flatMap(([name, value]) => [h("dt", {}, name), h("dd", { class: "mono" }, value)]);
}

function eventItems(all) {
  return all.map((event, index) => {
    const before = all[index - 1];
    const gap = before ? `+${duration(Date.parse(event.at) - Date.parse(before.at))}` : "";
    return h(
      "li",
      { class: `event ${event.status}`, data: { seq: event.seq, status: event.status } },
      h(
        "div",
        { class: "event-head" },
        h("span", { class: "mono time" }, clock(event.at)),
        h("span", { class: "muted gap" }, gap),
        statusBadge(event.status),
        h("span", { class: "muted" }, `#${event.seq} · attempt ${event.attempt}`),
      ),
      details(event),
    );
  });
}

/** What an event of each kind says beyond its status. */
function details(event) {
  if (event.waiting) return waiting(event);
  if (event.quotes) return routing(event);
  if (event.status === "routing") return noRoute(event);
  if (event.retryInMs !== undefined) {
    return line("retry", `${event.error} — next attempt in ${duration(event.retryInMs)}`);
  }
  if (event.transaction) return building(event.transaction);
  if (event.status === "submitted") {
    return line("sent", `${event.dex} · ${short(event.txHash, 10)} · lands by ${clock(event.expiresAt)} or never`);
  }
  if (event.status === "confirmed") return confirmed(event);
  if (event.recovered) return line("recovered", event.recovered);
  if (event.error) return failed(event);
  return null;
}

function line(kind, text) {
  return h("p", { class: `detail ${kind}` }, text);
}

function waiting(event) {
  const what =
    event.waiting === "listing"
      ? `waits for a venue to list ${event.token}`
      : `waits for its price: best ${event.bestPrice ? decimal(event.bestPrice) : "not known yet"}, limit ${decimal(event.limitPrice, 9)}`;
  return h("div", { class: "detail waiting" }, h("p", {}, what), event.reason ? h("p", { class: "muted" }, event.reason) : null);
}

function routing(event) {
  const unavailable = Object.entries(event.unavailable || {});
  return h(
    "div",
    { class: "detail routing" },
    h("p", { class: "reason" }, event.reason),
    h("div", { class: "quotes" }, event.quotes.map((quote) => quoteCard(quote, quote.dex === event.dex))),
    unavailable.map(([dex, why]) => h("p", { class: "muted" }, `${dex}: ${why}`)),
  );
}

function noRoute(event) {
  const unavailable = Object.entries(event.unavailable || {});
  return h(
    "div",
    { class: "detail no-route" },
    h("p", {}, event.error),
    unavailable.map(([dex, why]) => h("p", { class: "muted" }, `${dex}: ${why}`)),
  );
}

/** One venue's quote; `chosen` marks the one routing took. */
export function quoteCard(quote, chosen) {
  const row = (name, value) => [h("dt", {}, name), h("dd", { class: "mono" }, value)];
  return h(
    "div",
    { class: `quote ${quote.dex}${chosen ? " chosen" : ""}`, data: { dex: quote.dex, chosen: chosen ? "yes" : "no" } },
    h("div", { class: "quote-head" }, h("span", { class: `venue ${quote.dex}` }, quote.dex), chosen ? h("span", { class: "chosen-mark" }, "★ chosen") : null),
    h(
      "dl",
      {},
      row("out", decimal(quote.amountOut)),
      row("price", decimal(quote.price)),
      row("fee", decimal(quote.fee)),
      row("bps", decimal(quote.feeBps, 2)),
      row("impact", `${decimal(quote.priceImpactPct, 4)}%`),
    ),
  );
}

function building(transaction) {
  return h(
    "div",
    { class: "detail building" },
    h("p", {}, `signed ${short(transaction.signature, 10)} · min out ${decimal(transaction.minAmountOut)}`),
    h("p", { class: "muted mono" }, transaction.instructions.map((step) => `${step.program}.${step.action}`).join(" → ")),
  );
}

function confirmed(event) {
  const how = event.reconciled ? " (learnt by asking the venue)" : "";
  return line(
    "confirmed",
    `${decimal(event.amountIn, 9)} in → ${decimal(event.amountOut)} out at ${decimal(event.executedPrice)} on ${event.dex}, fee ${decimal(event.fee, 9)}${how}`,
  );
}

function failed(event) {
  const tag = event.cancelled ? "cancelled" : event.expired ? "expired" : "failed";
  return h("p", { class: `detail failed ${tag}` }, h("span", { class: "tag" }, tag), " ", event.error);
}
