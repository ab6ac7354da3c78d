/**
 * Binds every <form data-moica-login> on the page (rendered by {% moica_login_box %}).
 * A separate file rather than an inline script, so a Content-Security-Policy of
 * script-src 'self' needs no exception. Module scripts run after the document is parsed.
 */
import { autoBindAll } from "./moica-auth.js";

autoBindAll();
