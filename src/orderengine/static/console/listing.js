// The "list a token" control: a simulated venue opens a pool for a new pair, and the sniper
// orders waiting for it fire. While keys are in force this needs an admin's key.

import { call, describe } from "./api.js";
import { h, byId, toast } from "./dom.js";

export class ListingForm {
  constructor(catalog) {
    this.catalog = catalog;
    this.form = byId("listing-form");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  tokensChanged() {
    const select = byId("listing-quote");
    const chosen = select.value || "SOL";
    select.replaceChildren(...this.catalog.symbols().map((symbol) => h("option", { value: symbol }, symbol)));
    select.value = this.catalog.symbols().includes(chosen) ? chosen : "SOL";
  }

  async submit() {
    const get = (name) => this.form.elements[name].value.trim();
    const listing = {
      dex: get("dex"),
      token: get("token"),
      quoteToken: get("quoteToken"),
      price: get("price"),
      liquidity: get("liquidity"),
    };
    const error = byId("listing-error");
    error.textContent = "";
    try {
      const listed = await call("POST", "/api/simulation/listings", listing);
      toast(`${listed.token}/${listed.quoteToken} listed on ${listed.dex}`, "ok");
      this.form.elements.token.value = "";
      await this.catalog.refresh();
    } catch (failure) {
      error.textContent = describe(failure);
    }
  }
}
