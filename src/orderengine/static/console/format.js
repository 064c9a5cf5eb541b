// How amounts, times and durations are written. Amounts are the engine's decimal strings:
// they are cut and padded as text, never turned into binary floats.

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/** A decimal string with at most `places` decimals (cut, not rounded) and no trailing zeros. */
export function decimal(text, places = 6) {
  if (text === null || text === undefined) return "—";
  const match = DECIMAL.exec(String(text));
  if (!match) return String(text);
  const [, sign, whole, fraction = ""] = match;
  let kept = fraction.slice(0, places).replace(/0+$/, "");
  if (kept === "" && /[1-9]/.test(fraction)) kept = significant(fraction);
  return `${sign}${groupThousands(whole)}${kept ? "." + kept : ""}`;
}

/** The fraction up to its first two significant digits: a tiny price stays readable. */
function significant(fraction) {
  const first = fraction.search(/[1-9]/);
  return fraction.slice(0, first + 2).replace(/0+$/, "");
}

function groupThousands(whole) {
  return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Whether `text` is an amount a token with `decimals` decimals may have. */
export function validAmount(text, decimals) {
  const match = DECIMAL.exec(text.trim());
  if (!match || match[1] === "-" || !/[1-9]/.test(match[2] + (match[3] || ""))) return false;
  return (match[3] || "").replace(/0+$/, "").length <= decimals;
}

/** A time of day with milliseconds, in the browser's zone. */
export function clock(iso) {
  const at = new Date(iso);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}.${pad(at.getMilliseconds(), 3)}`;
}

/** A duration in milliseconds, short: 85ms, 2.4s, 3m 05s. */
export function duration(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, "0")}s`;
}

/** A long base58 signature or id, shortened: first and last characters. */
export function short(text, keep = 6) {
  if (!text) return "—";
  return text.length <= keep * 2 + 1 ? text : `${text.slice(0, keep)}…${text.slice(-keep)}`;
}
