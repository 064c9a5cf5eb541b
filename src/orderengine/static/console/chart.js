// A live chart of each pair's net price on each venue (uPlot), polled from /api/quotes, with
// the executions on the pair and the limit prices of its waiting orders marked. Prices become
// Numbers here for plotting only; amounts shown anywhere else stay the engine's strings.

import { call } from "./api.js";
import { h, byId } from "./dom.js";
import { decimal } from "./format.js";
import { pairOf, summary } from "./orders.js";

const POLL_MS = 2000;
const KEPT_POINTS = 300;
const HEIGHT = 260;
const COLORS = { raydium: "#a78bfa", meteora: "#f5a524" };
const OTHER_COLOR = "#38bdf8";
const LIMIT_COLOR = "#f472b6";

export class PriceChart {
  constructor(book) {
    this.book = book;
    this.pairs = new Map();
    this.selected = null;
    this.plot = null;
    this.polling = false;
    this.element = byId("chart");
    new ResizeObserver(() => this.resize()).observe(this.element);
    setInterval(() => this.poll(), POLL_MS);
  }

  /** Watch `tokenIn → tokenOut`, quoting `amountIn` (the latest order's amount on it). */
  watch(tokenIn, tokenOut, amountIn) {
    const key = `${tokenIn}→${tokenOut}`;
    const pair = this.pairs.get(key);
    if (pair) {
      pair.amountIn = amountIn;
      return;
    }
    this.pairs.set(key, { key, tokenIn, tokenOut, amountIn, times: [], prices: new Map() });
    if (!this.selected) this.selected = key;
    this.drawTabs();
    this.poll();
  }

  /** Keep watching only the pairs `keys`, in their order; the others' tabs go. */
  only(keys) {
    const kept = new Set(keys);
    const gone = [...this.pairs.keys()].filter((key) => !kept.has(key));
    if (gone.length === 0) return;
    gone.forEach((key) => this.pairs.delete(key));
    if (!kept.has(this.selected)) {
      this.select(this.pairs.keys().next().value ?? null);
    } else {
      this.drawTabs();
    }
  }

  async poll() {
    if (this.polling) return;
    this.polling = true;
    try {
      await Promise.all([...this.pairs.values()].map((pair) => this.sample(pair)));
    } finally {
      this.polling = false;
    }
    this.draw();
  }

  async sample(pair) {
    const query = new URLSearchParams({ tokenIn: pair.tokenIn, tokenOut: pair.tokenOut, amountIn: pair.amountIn });
    let preview;
    try {
      preview = await call("GET", `/api/quotes?${query}`);
    } catch (error) {
      return;
    }
    const venues = [...preview.quotes.map((quote) => quote.dex), ...Object.keys(preview.unavailable)];
    for (const dex of venues) {
      if (!pair.prices.has(dex)) pair.prices.set(dex, pair.times.map(() => null));
    }
    pair.times.push(Date.now() / 1000);
    for (const [dex, series] of pair.prices) {
      const quote = preview.quotes.find((found) => found.dex === dex);
      series.push(quote ? Number(quote.price) : null);
    }
    if (pair.times.length > KEPT_POINTS) {
      pair.times.shift();
      pair.prices.forEach((series) => series.shift());
    }
  }

  drawTabs() {
    byId("pair-tabs").replaceChildren(
      ...[...this.pairs.keys()].map((key) =>
        h(
          "button",
          {
            type: "button",
            class: key === this.selected ? "tab selected" : "tab",
            data: { pair: key },
            onclick: () => this.select(key),
          },
          key,
        ),
      ),
    );
  }

  select(key) {
    this.selected = key;
    this.drawTabs();
    this.plot?.destroy();
    this.plot = null;
    this.draw();
  }

  /** The executions on the selected pair, and the limits of its orders still waiting. */
  marks() {
    const executions = [];
    const limits = [];
    for (const order of this.book.orders.values()) {
      if (pairOf(order) !== this.selected) continue;
      const seen = summary(order);
      if (seen.executedPrice && seen.confirmedAt) {
        executions.push({ t: Date.parse(seen.confirmedAt) / 1000, price: Number(seen.executedPrice), dex: seen.dex });
      }
      if (seen.waiting === "price" && order.fields.limitPrice) {
        limits.push({ price: Number(order.fields.limitPrice), text: order.fields.limitPrice });
      }
    }
    return { executions, limits };
  }

  draw() {
    const pair = this.pairs.get(this.selected);
    if (!pair) return;
    const venues = [...pair.prices.keys()];
    const data = [pair.times, ...venues.map((dex) => pair.prices.get(dex))];
    if (this.plot && this.plot.series.length !== venues.length + 1) {
      this.plot.destroy();
      this.plot = null;
    }
    if (this.plot) {
      this.plot.setData(data);
    } else {
      this.plot = new uPlot(this.options(venues), data, this.element);
    }
    this.element.dataset.points = String(pair.times.length);
  }

  options(venues) {
    const axis = { stroke: "#8b93a7", grid: { stroke: "rgba(255,255,255,0.06)" }, ticks: { stroke: "rgba(255,255,255,0.1)" } };
    return {
      width: this.element.clientWidth || 600,
      height: HEIGHT,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (u, min, max) => this.range(min, max) } },
      axes: [axis, { ...axis, size: 80, values: (u, ticks) => ticks.map((tick) => tick.toPrecision(6).replace(/\.?0+$/, "")) }],
      series: [
        {},
        ...venues.map((dex) => ({
          label: dex,
          stroke: COLORS[dex] || OTHER_COLOR,
          width: 2,
          spanGaps: true,
          value: (u, value) => (value === null ? "—" : value.toPrecision(8)),
        })),
      ],
      hooks: { draw: [(u) => this.drawMarks(u)] },
    };
  }

  /** The y range: the venues' prices, stretched to the marks that are near them. */
  range(min, max) {
    if (min === null || max === null) return [0, 1];
    const { executions, limits } = this.marks();
    const near = [...executions, ...limits].map((mark) => mark.price).filter((price) => price > min * 0.8 && price < max * 1.2);
    const low = Math.min(min, ...near);
    const high = Math.max(max, ...near);
    const pad = (high - low) * 0.08 || Math.abs(high) * 0.01 || 1;
    return [low - pad, high + pad];
  }

  drawMarks(u) {
    const { executions, limits } = this.marks();
    const ctx = u.ctx;
    const [left, top, width, height] = [u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height];
    const [low, high] = [u.scales.y.min, u.scales.y.max];
    ctx.save();
    ctx.font = `${Math.round(11 * devicePixelRatio)}px ui-monospace, monospace`;
    let drawnLimits = 0;
    for (const limit of limits) {
      const clamped = Math.min(Math.max(limit.price, low), high);
      const y = u.valToPos(clamped, "y", true);
      ctx.strokeStyle = LIMIT_COLOR;
      ctx.fillStyle = LIMIT_COLOR;
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.lineWidth = devicePixelRatio;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      const arrow = limit.price > high ? " ↑" : limit.price < low ? " ↓" : "";
      ctx.fillText(`limit ${decimal(limit.text)}${arrow}`, left + 6, y + (limit.price > high ? 14 : -4) * devicePixelRatio);
      drawnLimits += 1;
    }
    ctx.setLineDash([]);
    let drawnExecutions = 0;
    for (const execution of executions) {
      const x = u.valToPos(execution.t, "x", true);
      if (x < left || x > left + width) continue;
      const y = u.valToPos(execution.price, "y", true);
      if (y < top || y > top + height) continue;
      const size = 5 * devicePixelRatio;
      ctx.fillStyle = COLORS[execution.dex] || OTHER_COLOR;
      ctx.strokeStyle = "#0b0f17";
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.beginPath();
      ctx.moveTo(x, y - size);
      ctx.lineTo(x + size, y);
      ctx.lineTo(x, y + size);
      ctx.lineTo(x - size, y);
      ctx.closePath();
      ctx.stroke();
      ctx.fill();
      drawnExecutions += 1;
    }
    ctx.restore();
    this.element.dataset.executions = String(drawnExecutions);
    this.element.dataset.limits = String(drawnLimits);
  }

  resize() {
    const width = this.element.clientWidth;
    if (this.plot && width && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }
}
