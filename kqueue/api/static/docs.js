// The API docs page: Swagger UI (from the installed swagger-ui-bundle package) over /openapi.json.
// In a file of its own, since the page's policy runs no inline script.
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
