// The tokens the engine knows and the pairs its venues have (GET /api/tokens), read again
// every few seconds and after a listing, so that a token listed by anyone shows up.

import { call } from "./api.js";

const REFRESH_MS = 5000;

export class Catalog {
  constructor(onChange) {
    this.onChange = onChange;
    this.tokens = new Map();
    this.pairs = [];
  }

  start() {
    setInterval(() => this.refresh(), REFRESH_MS);
    return this.refresh();
  }

  async refresh() {
    let catalog;
    try {
      catalog = await call("GET", "/api/tokens");
    } catch (error) {
      return;
    }
    const before = this.signature();
    this.tokens = new Map(catalog.tokens.map((token) => [token.symbol, token]));
    this.pairs = catalog.pairs;
    if (this.signature() !== before) this.onChange();
  }

  signature() {
    return JSON.stringify([[...this.tokens.keys()], this.pairs]);
  }

  symbols() {
    return [...this.tokens.keys()];
  }

  token(symbol) {
    return this.tokens.get(symbol) || null;
  }

  /** Whether some venue has a pool for the two tokens, either way round. */
  listed(first, second) {
    return this.pairs.some((pair) => pair.tokens.includes(first) && pair.tokens.includes(second) && first !== second);
  }
}
