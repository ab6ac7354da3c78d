/**
 * moica-auth browser client: log in with the citizen digital certificate (自然人憑證)
 * through the HiPKI local component (跨平台網頁元件).
 *
 * Plain ES module, no build step. See docs/client.md.
 *
 * The popup bridge (the component sends no CORS headers):
 *   1. on a user gesture the page opens `${componentUrl}/popupForm` (before any await, so
 *      popup blockers allow it);
 *   2. the popup posts {"func":"getTbs"} to its opener;
 *   3. the page answers with the request JSON string, addressed to the component's
 *      origin only;
 *   4. the popup signs with the card, posts the result JSON to the page and closes.
 * Messages from any other origin or window are ignored.
 *
 * The PIN goes to the component only. It is never put in a request to this site, never
 * stored, never logged, and the PIN field has no `name`, so a form submission cannot
 * carry it either.
 */

export const DEFAULT_COMPONENT_URL = "http://localhost:61161";
export const DEFAULT_TIMEOUT_MS = 15000;
export const PIN_PATTERN = /^[0-9]{6,8}$/;

// English fallbacks; the page normally passes Django's catalogue (hipki.client_messages()).
const FALLBACK = {
  ret_code: {
    "76000006": { key: "no_card", message: "No card was found. Insert your citizen certificate card." },
    "76000998": { key: "no_pin", message: "Enter the card's PIN." },
    "76000999": { key: "cancelled", message: "You cancelled the operation." },
    "7600000F": { key: "site_not_trusted", message: "The card reader component does not yet trust this site. Allow this site, then try again." },
    "76000031": { key: "site_not_trusted", message: "The card reader component does not yet trust this site. Allow this site, then try again." },
    "76100003": { key: "no_reader", message: "No card reader was found. Connect the reader and try again." },
    "76100006": { key: "card_login_failed", message: "Logging in to the card failed. Check the PIN." },
    "76500001": { key: "certificate_not_yet_valid", message: "The card's certificate is not yet valid." },
    "76500002": { key: "certificate_expired", message: "The card's certificate has expired." },
    "76210001": { key: "id_mismatch", message: "The ID number does not match the card." },
  },
  last_error: {
    "A0": { key: "wrong_pin", message: "Wrong PIN.", tries_left: null },
    "A2": { key: "pin_length", message: "The PIN must be 6 to 8 digits.", tries_left: null },
    "A4": { key: "card_locked", message: "The card is locked after too many wrong PINs. Unlock it online with your user code (用戶代碼).", tries_left: null },
    "80000002": { key: "wrong_pin", message: "Wrong PIN. 2 tries left.", tries_left: 2 },
    "80000001": { key: "wrong_pin", message: "Wrong PIN. 1 try left before the card locks.", tries_left: 1 },
  },
  client: {
    component_missing: "The card reader component (HiPKI) is not running. Install or start it, then try again.",
    popup_blocked: "The browser blocked the card reader window. Allow pop-ups for this site.",
    timeout: "The card reader component did not answer in time.",
    unknown: "The card reader component reported an error.",
    server_error: "The server could not be reached. Please try again.",
  },
};

const RET_CANCELLED = "76000999";
// A popup that reads as closed this soon after opening was never really ours (see _bridge).
const SEVERED_MS = 1500;
const RET_NO_PIN = "76000998";
// The `func` of the popup's answer to a request (an answer without `func` is accepted too).
const SIGN_RESULT_FUNCS = ["sign", "MakeSignature"];
const INFO_RESULT_FUNCS = ["pkcs11info"];
const LAST_PIN_LENGTH = "A2";

/** A failed login: `key` is stable (see docs/client.md), `message` is for the citizen. */
export class MoicaError extends Error {
  constructor({ key, message, code = null, triesLeft = null, retCode = null, lastError = null,
                addDomainUrl = null, status = null }) {
    super(message);
    this.name = "MoicaError";
    this.key = key;
    this.code = code;
    this.triesLeft = triesLeft;
    this.retCode = retCode;
    this.lastError = lastError;
    this.addDomainUrl = addDomainUrl;
    this.status = status;
  }
}

/** A ret_code / last_error value (number or "0x…"/decimal string) as upper-case hex. */
export function hexCode(value) {
  if (value === null || value === undefined || value === "" || typeof value === "boolean") {
    return null;
  }
  let n;
  if (typeof value === "number") {
    // Only whole numbers: parseInt-style leniency would read "0abc" as 0, i.e. success.
    n = Number.isInteger(value) ? value : NaN;
  } else {
    const text = String(value).trim().toLowerCase();
    if (/^0x[0-9a-f]{1,8}$/.test(text)) {
      n = parseInt(text.slice(2), 16);
    } else if (/^-?[0-9]{1,10}$/.test(text)) {
      n = parseInt(text, 10);
    } else {
      n = NaN;
    }
  }
  if (!Number.isFinite(n)) {
    return null;
  }
  return (n >>> 0).toString(16).toUpperCase();
}

/**
 * The origin of a component URL, which must be http(s)://host[:port] (an optional "/"):
 * it is compared with MessageEvent.origin and is the postMessage target of the PIN.
 * Anything else (javascript:, data:, credentials, a path) throws: the client fails closed.
 */
export function componentOrigin(value) {
  let url = null;
  try {
    url = new URL(String(value));
  } catch (e) {
    url = null;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.username ||
      url.password || url.pathname !== "/" || url.search || url.hash ||
      /[?#]/.test(String(value)) || url.origin === "null") {
    throw new TypeError("moica-auth: componentUrl must be http(s)://host[:port], e.g. " +
                        DEFAULT_COMPONENT_URL);
  }
  return url.origin;
}

/** A login redirect of the server, if it stays on this site (http(s), same origin); else "/". */
export function sameSiteRedirect(value) {
  if (typeof value !== "string" || value === "") {
    return "/";
  }
  let url = null;
  try {
    url = new URL(value, location.href);
  } catch (e) {
    return "/";
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.origin !== location.origin) {
    return "/";
  }
  return value;
}

function mergeMessages(messages) {
  const given = messages || {};
  return {
    ret_code: { ...FALLBACK.ret_code, ...(given.ret_code || {}) },
    last_error: { ...FALLBACK.last_error, ...(given.last_error || {}) },
    client: { ...FALLBACK.client, ...(given.client || {}) },
  };
}

function parseMessageData(data) {
  if (typeof data === "string") {
    try {
      return JSON.parse(data);
    } catch (e) {
      return null;
    }
  }
  return data && typeof data === "object" ? data : null;
}

function readCookie(name) {
  for (const part of (document.cookie || "").split(";")) {
    const [k, ...rest] = part.trim().split("=");
    if (k === name) {
      return decodeURIComponent(rest.join("="));
    }
  }
  return null;
}

export class MoicaClient {
  /**
   * @param {object} options
   * @param {string} [options.componentUrl] the HiPKI component base URL
   * @param {{session: string, challenge: string, login: string}} options.endpoints
   * @param {object} [options.messages] the catalogue of hipki.client_messages()
   * @param {number} [options.timeoutMs] how long the popup may take to say getTbs
   * @param {number} [options.signTimeoutMs] how long signing may take after that
   * @param {string} [options.csrfCookieName] Django's CSRF_COOKIE_NAME
   * @param {() => string|null} [options.csrfToken] another way to find the token
   */
  constructor({
    componentUrl = DEFAULT_COMPONENT_URL,
    endpoints = {},
    messages = null,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    signTimeoutMs = 120000,
    csrfCookieName = "csrftoken",
    csrfToken = null,
    popupFeatures = "popup,width=420,height=360",
  } = {}) {
    // Validated and normalised: the component URL is exactly an http(s) origin.
    this.componentOrigin = componentOrigin(componentUrl);
    this.componentUrl = this.componentOrigin;
    this.endpoints = {
      session: endpoints.session || "/moica/session/",
      challenge: endpoints.challenge || "/moica/challenge/",
      login: endpoints.login || "/moica/login/",
    };
    this.messages = mergeMessages(messages);
    this.timeoutMs = timeoutMs;
    this.signTimeoutMs = signTimeoutMs;
    this.csrfCookieName = csrfCookieName;
    this.csrfTokenSource = csrfToken;
    this.popupFeatures = popupFeatures;
    this._busy = false;
  }

  /** The page the citizen opens to let the component trust this site. */
  addDomainUrl() {
    // The component's addDomain takes the bare host name (location.hostname), no port.
    return `${this.componentUrl}/addDomain?domain=${encodeURIComponent(location.hostname)}`;
  }

  /** The error for a failure the bridge itself detects (popup blocked, timeout, …). */
  clientError(key, extra = {}) {
    return new MoicaError({ key, message: this.messages.client[key] || this.messages.client.unknown,
                            ...extra });
  }

  /** The error a component answer reports; last_error wins when it is known. */
  componentError(answer) {
    const ret = hexCode(answer && answer.ret_code);
    const last = hexCode(answer && answer.last_error);
    let entry = last && last !== "0" ? this.messages.last_error[last] : undefined;
    let triesLeft = entry ? (entry.tries_left ?? null) : null;
    if (!entry && ret) {
      entry = this.messages.ret_code[ret];
    }
    const code = ret ? `0x${ret}` : null;
    const extra = { code, triesLeft, retCode: ret, lastError: last };
    if (!entry) {
      return this.clientError("unknown", extra);
    }
    if (entry.key === "site_not_trusted") {
      extra.addDomainUrl = this.addDomainUrl();
    }
    return new MoicaError({ key: entry.key, message: entry.message, ...extra });
  }

  /**
   * Log in. Call it directly from a click/submit handler: the popup is opened before
   * the first await. Resolves with {redirect}; rejects with a MoicaError.
   */
  async login({ pin, idNumber = null, birthDate = null, next = null, fields = null,
                slotDescription = null } = {}) {
    // Everything up to window.open is synchronous: the user gesture is still active.
    if (this._busy) {
      throw this.clientError("unknown", { code: "busy" });
    }
    if (pin === null || pin === undefined || pin === "") {
      throw this.componentError({ ret_code: Number.parseInt(RET_NO_PIN, 16) });
    }
    if (!PIN_PATTERN.test(String(pin))) {
      throw this.componentError({ ret_code: 0x76100006, last_error: Number.parseInt(LAST_PIN_LENGTH, 16) });
    }
    const popup = this._openPopup();
    this._busy = true;
    try {
      const bridge = this._bridge(popup, SIGN_RESULT_FUNCS);
      let challenge;
      try {
        challenge = await this._fetchChallenge();
      } catch (err) {
        bridge.abort();
        throw err;
      }
      const request = {
        func: "MakeSignature",
        signatureType: challenge.signature_type || "PKCS7",
        tbs: challenge.tbs,
        tbsEncoding: challenge.tbs_encoding || "NONE",
        hashAlgorithm: challenge.hash_algorithm || "SHA256",
        withCardSN: "true",
        pin: String(pin),
        nonce: challenge.nonce,
      };
      if (slotDescription) {
        request.slotDescription = slotDescription;
      }
      const answer = await bridge.send(request);
      if (hexCode(answer.ret_code) !== "0") {
        throw this.componentError(answer);
      }
      if (!answer.signature) {
        throw this.clientError("unknown");
      }
      return await this._postLogin({
        signature: answer.signature,
        signature_type: request.signatureType,
        certificate: answer.certb64 || null,
        card_sn: answer.cardSN || null,
        nonce: challenge.nonce,
        id_number: idNumber || null,
        birth_date: birthDate || null,
        next: next || null,
        fields: fields || null,
      });
    } finally {
      this._busy = false;
    }
  }

  /**
   * Read the reader, card and certificates (pkcs11info with certificates) through the
   * popup. Call from a user gesture. Resolves with the component's answer, plus
   * `signingCertificate`: the first certificate whose usage is digitalSignature.
   */
  async cardInfo() {
    if (this._busy) {
      throw this.clientError("unknown", { code: "busy" });
    }
    const popup = this._openPopup();
    this._busy = true;
    try {
      const answer = await this._bridge(popup, INFO_RESULT_FUNCS)
        .send({ func: "pkcs11info", withcert: "true" });
      if (hexCode(answer.ret_code) !== "0") {
        throw this.componentError(answer);
      }
      return { ...answer, signingCertificate: pickSigningCertificate(answer) };
    } finally {
      this._busy = false;
    }
  }

  /**
   * Open the component's popupForm in a new, unnamed window. A shared window name would
   * let a second login (another box, another page of the site) navigate the popup a
   * running login listens to.
   */
  _openPopup() {
    const popup = window.open(`${this.componentUrl}/popupForm`, "_blank", this.popupFeatures);
    if (!popup) {
      throw this.clientError("popup_blocked");
    }
    return popup;
  }

  /**
   * The popup side of the exchange. Listening starts at once (getTbs may arrive before
   * the challenge does); send() posts the request when both are there and resolves with
   * the component's result.
   */
  _bridge(popup, resultFuncs) {
    const origin = this.componentOrigin;
    let ready = false;
    let pending = null; // the request, once known
    let sent = false;
    let settle = null;
    let failure = null;
    const timers = [];

    const cleanup = () => {
      window.removeEventListener("message", onMessage);
      for (const t of timers) {
        clearTimeout(t);
        clearInterval(t);
      }
      timers.length = 0;
      try {
        if (!popup.closed) {
          popup.close();
        }
      } catch (e) {
        // a navigated-away popup may refuse; nothing else to do
      }
    };
    const fail = (error) => {
      failure = failure || error;
      cleanup();
      if (settle) {
        settle.reject(failure);
      }
    };
    const trySend = () => {
      if (!ready || !pending || sent) {
        return;
      }
      sent = true;
      const message = JSON.stringify(pending);
      // Keep no reference to the PIN once it is on its way.
      delete pending.pin;
      pending = null;
      // Addressed to the component's origin only: if the popup is anywhere else now,
      // the browser drops the message, and the PIN with it.
      popup.postMessage(message, origin);
      timers.push(setTimeout(() => fail(this.clientError("timeout")), this.signTimeoutMs));
    };
    const onMessage = (event) => {
      if (event.origin !== origin || event.source !== popup) {
        return;
      }
      const data = parseMessageData(event.data);
      if (!data) {
        return;
      }
      if (data.func === "getTbs") {
        ready = true;
        trySend();
      } else if (sent && settle && (data.func === undefined || data.func === null ||
                                     resultFuncs.includes(data.func))) {
        // The answer to our request. Another page of the component in the popup (say
        // addDomain's {"func":"addDomain"}) is not.
        cleanup();
        settle.resolve(data);
      }
    };
    window.addEventListener("message", onMessage);
    // The component never said getTbs: not installed, not running, or the page failed.
    timers.push(setTimeout(() => {
      if (!ready) {
        fail(this.clientError("component_missing"));
      }
    }, this.timeoutMs));
    // Closing the popup before the result is cancelling. The component's popup closes
    // itself right after posting the result, so wait one more tick for that message.
    const openedAt = Date.now();
    let closedSeen = false;
    const checkClosed = () => {
      let closed = false;
      try {
        closed = popup.closed;
      } catch (e) {
        closed = false;
      }
      if (closed && !ready && Date.now() - openedAt < SEVERED_MS) {
        // No one closes a window this fast: the page's Cross-Origin-Opener-Policy cut
        // the popup off (window.opener is null there, and the handle reads as closed).
        console.error(
          "moica-auth: the HiPKI popup was severed from this page. Serve the login page " +
          "with 'Cross-Origin-Opener-Policy: same-origin-allow-popups' (Django: " +
          "SECURE_CROSS_ORIGIN_OPENER_POLICY = \"same-origin-allow-popups\").");
        fail(this.clientError("popup_blocked", { code: "opener_policy" }));
      } else if (closed && closedSeen) {
        fail(this.componentError({ ret_code: Number.parseInt(RET_CANCELLED, 16) }));
      }
      closedSeen = closed;
    };
    timers.push(setInterval(checkClosed, 200));

    return {
      abort: () => fail(this.clientError("unknown")),
      send: (request) => new Promise((resolve, reject) => {
        if (failure) {
          cleanup();
          reject(failure);
          return;
        }
        settle = { resolve, reject };
        pending = request;
        trySend();
      }),
    };
  }

  _csrfToken() {
    const fromCookie = readCookie(this.csrfCookieName);
    if (fromCookie) {
      return fromCookie;
    }
    return this.csrfTokenSource ? this.csrfTokenSource() : null;
  }

  async _ensureCsrf() {
    let token = this._csrfToken();
    if (!token) {
      // GET session/ sets the CSRF cookie (ensure_csrf_cookie).
      await this._fetch(this.endpoints.session, { method: "GET" });
      token = this._csrfToken();
    }
    return token;
  }

  async _fetch(url, init) {
    const options = {
      credentials: "same-origin",
      cache: "no-store",
      ...init,
      headers: { Accept: "application/json", ...(init.headers || {}) },
    };
    if (typeof AbortSignal !== "undefined" && AbortSignal.timeout) {
      options.signal = AbortSignal.timeout(Math.max(this.timeoutMs, 10000));
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (e) {
      throw this.clientError("server_error");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    return { response, body };
  }

  async _postJson(url, payload) {
    const token = await this._ensureCsrf();
    const headers = { "Content-Type": "application/json" };
    if (token) {
      headers["X-CSRFToken"] = token;
    }
    const { response, body } = await this._fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify(payload),
    });
    if (!response.ok || !body || body.ok === false) {
      if (body && typeof body.code === "string" && body.code &&
          typeof body.message === "string" && body.message) {
        // A refusal of the server: show its message (already in the page's language).
        // autoBind shows it as text (textContent), never as HTML.
        throw new MoicaError({ key: "server_refused", message: body.message, code: body.code,
                               status: response.status,
                               triesLeft: Number.isInteger(body.tries_left) ? body.tries_left : null });
      }
      throw this.clientError("server_error", { status: response.status });
    }
    return body;
  }

  async _fetchChallenge() {
    const challenge = await this._postJson(this.endpoints.challenge, {});
    if (!challenge || typeof challenge.tbs !== "string" || typeof challenge.nonce !== "string") {
      throw this.clientError("server_error");
    }
    return challenge;
  }

  async _postLogin(payload) {
    const body = await this._postJson(this.endpoints.login, payload);
    // The server checks `next`; this only keeps a broken answer from navigating the page
    // to another site or a javascript: URL.
    return { redirect: sameSiteRedirect(body.redirect) };
  }
}

/** The certificate of a pkcs11info answer whose usage is digitalSignature, or null. */
export function pickSigningCertificate(info) {
  for (const slot of (info && info.slots) || []) {
    for (const cert of (slot.token && slot.token.certs) || []) {
      if (String(cert.usage || "").toLowerCase().includes("digitalsignature")) {
        return { ...cert, slotDescription: slot.slotDescription };
      }
    }
  }
  return null;
}

function readJsonScript(id) {
  const node = id ? document.getElementById(id) : null;
  if (!node) {
    return null;
  }
  try {
    return JSON.parse(node.textContent);
  } catch (e) {
    return null;
  }
}

/**
 * Wire a `<form data-moica-login>` rendered by {% moica_login_box %}. Returns the client.
 * Dispatches "moica:success" (cancelable; detail {redirect}) and "moica:error"
 * (detail: the MoicaError) on the form.
 */
export function autoBind(form, options = {}) {
  if (!form || form.dataset.moicaBound === "true") {
    return null;
  }
  const data = form.dataset;
  const pinInput = form.querySelector("[data-moica-pin]");
  if (pinInput) {
    // Belt and braces: a named PIN field could be submitted to the server.
    pinInput.removeAttribute("name");
  }
  let client;
  try {
    client = new MoicaClient({
      componentUrl: data.componentUrl || DEFAULT_COMPONENT_URL,
      endpoints: { session: data.sessionUrl, challenge: data.challengeUrl, login: data.loginUrl },
      messages: readJsonScript(data.messagesId),
      timeoutMs: data.timeoutMs ? Number(data.timeoutMs) : DEFAULT_TIMEOUT_MS,
      csrfToken: () => {
        const input = form.querySelector('input[name="csrfmiddlewaretoken"]');
        return input ? input.value : null;
      },
      ...options,
    });
  } catch (e) {
    // A bad component URL: this box stays disabled (fails closed); the others still bind.
    console.error("moica-auth: login box not bound:", e && e.message);
    return null;
  }
  const status = form.querySelector("[data-moica-status]");
  const button = form.querySelector("[data-moica-submit]");
  const field = (name) => {
    const input = form.querySelector(`[data-moica-field="${name}"]`);
    return input ? input.value.trim() : null;
  };

  const show = (text, { error = false, link = null } = {}) => {
    if (!status) {
      return;
    }
    status.textContent = text;
    status.classList.toggle("moica-error", error);
    if (link && /^https?:\/\//i.test(link.href)) {
      const a = document.createElement("a");
      a.href = link.href;
      a.target = "_blank";
      a.rel = "noopener";
      a.textContent = link.text;
      status.append(" ", a);
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") {
      // A second submission (Enter, requestSubmit) while a login runs: ignore it, and
      // leave the running login's PIN field and button alone.
      return;
    }
    const pin = pinInput ? pinInput.value : "";
    // The PIN leaves the page's memory as soon as it is handed to the component.
    if (pinInput) {
      pinInput.value = "";
    }
    if (button) {
      button.disabled = true;
    }
    form.setAttribute("aria-busy", "true");
    show(data.workingText || "…");
    const fields = (data.fields || "").split(",").filter(Boolean);
    client
      .login({
        pin,
        idNumber: fields.includes("id_number") ? field("id_number") : null,
        birthDate: fields.includes("birth_date") ? field("birth_date") : null,
        next: data.next || null,
        fields: fields.length ? fields.join(",") : null,
      })
      .then((result) => {
        show(data.successText || "✓");
        const go = form.dispatchEvent(new CustomEvent("moica:success", {
          detail: result, cancelable: true, bubbles: true,
        }));
        if (go) {
          window.location.assign(result.redirect);
        }
      })
      .catch((error) => {
        const err = error instanceof MoicaError ? error : client.clientError("unknown");
        show(err.message, {
          error: true,
          link: err.addDomainUrl ? { href: err.addDomainUrl, text: data.addDomainText || err.addDomainUrl } : null,
        });
        form.dispatchEvent(new CustomEvent("moica:error", { detail: err, bubbles: true }));
        if (pinInput) {
          pinInput.focus();
        }
      })
      .finally(() => {
        form.removeAttribute("aria-busy");
        if (button) {
          button.disabled = false;
        }
      });
  });
  if (button) {
    // Disabled in the HTML until this runs: without the script nothing can be submitted.
    button.disabled = false;
  }
  form.dataset.moicaBound = "true";
  return client;
}

/** Bind every `form[data-moica-login]` in the document. */
export function autoBindAll(root = document) {
  return Array.from(root.querySelectorAll("form[data-moica-login]")).map((f) => autoBind(f));
}
