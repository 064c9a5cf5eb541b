// The live table of orders, newest first: one row per order, drawn again when it changes.

import { h, byId } from "./dom.js";
import { decimal, duration, short } from "./format.js";
import { summary, timeInStatus } from "./orders.js";

export class OrdersTable {
  constructor(book, { onOpen, onCancel }) {
    this.book = book;
    this.onOpen = onOpen;
    this.onCancel = onCancel;
    this.body = byId("orders").tBodies[0];
    this.rows = new Map();
    this.pending = false;
  }

  /** Draw the table again at the next frame; many events in a burst cost one drawing. */
  refresh() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  /** Rows and cells are kept while they stay the same, so a click never lands on a stale one. */
  draw() {
    const orders = this.book.newestFirst();
    const rows = orders.map((order) => this.update(order));
    rows.forEach((row, index) => {
      if (this.body.children[index] !== row) this.body.insertBefore(row, this.body.children[index] || null);
    });
    while (this.body.children.length > rows.length) this.body.lastElementChild.remove();
    const shown = new Set(orders.map((order) => order.id));
    for (const id of this.rows.keys()) if (!shown.has(id)) this.rows.delete(id);
    byId("no-orders").hidden = orders.length > 0;
    byId("order-count").textContent = orders.length ? `${orders.length} shown` : "";
  }

  update(order) {
    const fresh = this.row(order);
    const kept = this.rows.get(order.id);
    if (!kept) {
      this.rows.set(order.id, fresh);
      return fresh;
    }
    kept.dataset.status = fresh.dataset.status;
    [...fresh.cells].forEach((cell, index) => {
      if (!kept.cells[index].isEqualNode(cell)) kept.replaceChild(cell, kept.cells[index]);
    });
    return kept;
  }

  row(order) {
    const fields = order.fields;
    const seen = summary(order);
    return h(
      "tr",
      { data: { orderId: order.id, status: seen.status }, onclick: () => this.onOpen(order.id) },
      h("td", {}, statusBadge(seen.status, seen.waiting)),
      h("td", { class: "type" }, fields.type || "—"),
      h("td", { class: "pair" }, `${fields.tokenIn || "?"} → ${fields.tokenOut || "?"}`),
      h("td", { class: "num" }, decimal(fields.amountIn, 9)),
      h("td", {}, seen.dex ? h("span", { class: `venue ${seen.dex}` }, seen.dex) : "—"),
      h("td", { class: "num executed-price" }, decimal(seen.executedPrice)),
      h("td", { class: "num amount-out" }, decimal(seen.amountOut)),
      h("td", { class: "num" }, String(seen.attempt)),
      h("td", {}, timeChips(order)),
      h("td", { class: "mono signature", title: seen.signature || "" }, short(seen.signature, 4)),
      h("td", {}, seen.cancellable ? this.cancelButton(order.id) : null),
    );
  }

  cancelButton(id) {
    return h(
      "button",
      {
        class: "cancel small",
        type: "button",
        title: "Cancel this order",
        "aria-label": "Cancel this order",
        onclick: (event) => {
          event.stopPropagation();
          this.onCancel(id);
        },
      },
      "✕",
    );
  }
}

export function statusBadge(status, waiting) {
  const label = waiting ? `${status} · ${waiting}` : status;
  return h("span", { class: `status ${status}`, data: { status } }, label);
}

function timeChips(order) {
  return h(
    "span",
    { class: "chips" },
    timeInStatus(order).map(([status, ms]) =>
      h("span", { class: `chip ${status}`, title: `${status}: ${duration(ms)}` }, `${status[0].toUpperCase()} ${duration(ms)}`),
    ),
  );
}
