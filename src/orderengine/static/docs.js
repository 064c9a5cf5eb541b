// Swagger UI on the engine's OpenAPI document. A file of its own rather than an inline
// script: the page's Content-Security-Policy runs scripts from the engine only. No
// validator badge: it would send the document to a site on the internet.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
  });
});
