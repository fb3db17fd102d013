// Starts Swagger UI on /api/docs (a file, not an inline script: the CSP forbids those).
window.addEventListener("DOMContentLoaded", function () {
  window.SwaggerUIBundle({
    url: document.getElementById("swagger-ui").dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
});
