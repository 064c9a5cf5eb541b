// Building the page's elements: text is always set as text, never parsed as HTML, so a token
// symbol or an error message from the engine can never inject markup.

/** An element: `h("td", {class: "num", data: {status: "confirmed"}}, "1.5", child)`. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "data") {
      Object.assign(element.dataset, value);
    } else if (name.startsWith("on")) {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

/** Show a short message in the corner for a few seconds. */
export function toast(message, kind = "info") {
  const note = h("div", { class: `toast ${kind}` }, message);
  byId("toasts").append(note);
  setTimeout(() => note.remove(), 5000);
}
