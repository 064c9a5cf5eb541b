// The orders the console knows, each with every event it has seen, merged by seq: an event
// may come both from the feed and from reading the order, and counts once.

const STATUSES = ["pending", "routing", "building", "submitted", "confirmed", "failed"];
const CANCELLABLE = new Set(["pending", "routing", "building"]);
const KEPT = 200;

export class OrderBook {
  constructor(onChange) {
    this.orders = new Map();
    this.onChange = onChange;
  }

  /** An order as the API answers it (accepted, listed, or read with its events). */
  put(answer) {
    const known = this.orders.get(answer.orderId);
    const order = known || { id: answer.orderId, fields: {}, events: new Map() };
    order.fields = { ...order.fields, ...withoutEvents(answer) };
    for (const event of answer.events || []) order.events.set(event.seq, event);
    this.orders.set(order.id, order);
    this.trim();
    this.onChange(order.id);
    return order;
  }

  /** A feed event; false when its order is not known yet (its fields must be read). */
  add(event) {
    const order = this.orders.get(event.orderId);
    if (!order) return false;
    order.events.set(event.seq, event);
    this.onChange(order.id);
    return true;
  }

  /** Forget every order: another key sees other orders. */
  clear() {
    this.orders.clear();
    this.onChange(null);
  }

  get(id) {
    return this.orders.get(id);
  }

  /** Every order, newest first. */
  newestFirst() {
    return [...this.orders.values()].sort((a, b) => created(b).localeCompare(created(a)));
  }

  trim() {
    if (this.orders.size <= KEPT) return;
    for (const order of this.newestFirst().slice(KEPT)) this.orders.delete(order.id);
  }
}

function withoutEvents(answer) {
  const { events, ...fields } = answer;
  return fields;
}

function created(order) {
  const first = order.events.get(1);
  return order.fields.createdAt || (first ? first.at : "");
}

/** The order's events, in seq order. */
export function events(order) {
  return [...order.events.values()].sort((a, b) => a.seq - b.seq);
}

function latest(order) {
  const all = events(order);
  return all.length ? all[all.length - 1] : null;
}

function lastWith(order, field) {
  return events(order).reverse().find((event) => event[field] !== undefined) || null;
}

/** What the table shows of an order, from its fields and its events. */
export function summary(order) {
  const last = latest(order);
  const confirmed = events(order).find((event) => event.status === "confirmed");
  const status = last ? last.status : order.fields.status;
  const venue = lastWith(order, "dex");
  const signed = lastWith(order, "txHash");
  const built = lastWith(order, "transaction");
  return {
    status,
    waiting: status === "pending" && last && last.waiting ? last.waiting : null,
    attempt: last ? last.attempt : order.fields.attempt || 1,
    dex: venue ? venue.dex : order.fields.dex || null,
    executedPrice: confirmed ? confirmed.executedPrice : order.fields.executedPrice || null,
    amountOut: confirmed ? confirmed.amountOut : order.fields.amountOut || null,
    confirmedAt: confirmed ? confirmed.at : null,
    signature: signed ? signed.txHash : built ? built.transaction.signature : order.fields.txHash || null,
    cancellable: CANCELLABLE.has(status),
  };
}

/** Milliseconds spent in each status, in lifecycle order; the current one runs to `now`. */
export function timeInStatus(order, now = Date.now()) {
  const all = events(order);
  const spent = new Map();
  all.forEach((event, index) => {
    const next = all[index + 1];
    const terminal = event.status === "confirmed" || event.status === "failed";
    if (terminal && !next) return;
    const end = next ? Date.parse(next.at) : now;
    spent.set(event.status, (spent.get(event.status) || 0) + end - Date.parse(event.at));
  });
  return STATUSES.filter((status) => spent.has(status)).map((status) => [status, spent.get(status)]);
}

/** A pair as the chart names it: the order's direction, `tokenIn→tokenOut`. */
export function pairOf(order) {
  return `${order.fields.tokenIn}→${order.fields.tokenOut}`;
}
