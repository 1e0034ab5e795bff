// Starts Swagger UI on #swagger-ui with the OpenAPI document that the element's
// data-openapi-url names. A file, not an inline script, so that the docs page's
// Content-Security-Policy allows scripts from this origin only.
window.addEventListener("DOMContentLoaded", function () {
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    persistAuthorization: false,
    // No badge fetched from the online validator: the page talks to this server only.
    validatorUrl: null,
  });
});
