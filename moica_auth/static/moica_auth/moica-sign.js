/**
 * moica-auth signing: the citizen signs exactly the text the confirmation page shows
 * (moica_auth/sign_confirm.html) with the card, through the same HiPKI popup bridge as
 * the login (moica-auth.js), and the answer is POSTed back to the page's URL.
 *
 * Plain ES module, no build step, no inline script (script-src 'self' works).
 * See docs/signing.md ("The browser side").
 *
 * The HiPKI request (MakeSignature, PKCS7 over the text or RAW over its DigestInfo) comes
 * from the server in a json_script block: this script adds only the PIN. It never edits
 * the text or the tbs, so what the page shows is what the card signs.
 */

// Signing with the phone (「以行動自然人憑證簽章」): the confirmation page's
// <form data-moica-mobile> is the login box's mobile form pointed at the signing
// endpoints (sign/mobile/start/, sign/mobile/status/); the same script binds it.
import "./moica-auth-mobile.js";
import {
  MoicaClient,
  MoicaError,
  PIN_PATTERN,
  hexCode,
  readJsonScript,
  sameSiteRedirect,
  showStatus,
} from "./moica-auth.js";

const SIGNATURE_TYPES = ["PKCS7", "RAW"];
const RESULT_FUNCS = ["sign", "MakeSignature"];

/**
 * Sign one request. Call it directly from a click handler: the popup opens before the
 * first await. Resolves with the server's JSON answer; rejects with a MoicaError.
 *
 * @param {MoicaClient} client the login client (component URL, messages, CSRF)
 * @param {object} options
 * @param {object} options.hipkiRequest the server's MakeSignature request (no PIN)
 * @param {string} options.requestId the signature request's id
 * @param {string} options.pin the card PIN (goes to the component only)
 * @param {string} options.finishUrl where the answer is POSTed (the page's own URL)
 */
export async function signRequest(client, { hipkiRequest, requestId, pin, finishUrl }) {
  if (client._busy) {
    throw client.clientError("unknown", { code: "busy" });
  }
  if (!hipkiRequest || hipkiRequest.func !== "MakeSignature" ||
      !SIGNATURE_TYPES.includes(hipkiRequest.signatureType) ||
      typeof hipkiRequest.tbs !== "string" || !hipkiRequest.tbs ||
      typeof requestId !== "string" || !requestId) {
    // A page without a well-formed request signs nothing.
    throw client.clientError("unknown", { code: "bad_request" });
  }
  if (pin === null || pin === undefined || pin === "") {
    throw client.componentError({ ret_code: 0x76000998 });
  }
  if (!PIN_PATTERN.test(String(pin))) {
    throw client.componentError({ ret_code: 0x76100006, last_error: 0xa2 });
  }
  const popup = client._openPopup();
  client._busy = true;
  try {
    const request = {
      func: "MakeSignature",
      signatureType: hipkiRequest.signatureType,
      tbs: hipkiRequest.tbs,
      tbsEncoding: hipkiRequest.tbsEncoding || "NONE",
      hashAlgorithm: hipkiRequest.hashAlgorithm || "SHA256",
      withCardSN: "true",
      pin: String(pin),
    };
    if (hipkiRequest.nonce) {
      request.nonce = hipkiRequest.nonce;
    }
    const answer = await client._bridge(popup, RESULT_FUNCS).send(request);
    if (hexCode(answer.ret_code) !== "0") {
      throw client.componentError(answer);
    }
    if (typeof answer.signature !== "string" || !answer.signature) {
      throw client.clientError("unknown");
    }
    return await client._postJson(finishUrl, {
      request: requestId,
      signature: answer.signature,
      signature_type: request.signatureType,
      certificate: typeof answer.certb64 === "string" ? answer.certb64 : null,
    });
  } finally {
    client._busy = false;
  }
}

/**
 * Wire a `<section data-moica-sign>` of sign_confirm.html. Dispatches "moica:signed"
 * (cancelable; detail: the server's answer) and "moica:error" (detail: the MoicaError).
 */
export function bindSignSection(section, options = {}) {
  if (!section || section.dataset.moicaBound === "true") {
    return null;
  }
  const data = section.dataset;
  const pinInput = section.querySelector("[data-moica-pin]");
  if (pinInput) {
    pinInput.removeAttribute("name");
  }
  let client;
  try {
    client = new MoicaClient({
      componentUrl: data.componentUrl,
      messages: readJsonScript(data.messagesId),
      endpoints: { session: data.sessionUrl },
      csrfToken: () => {
        const input = section.querySelector('input[name="csrfmiddlewaretoken"]');
        return input ? input.value : null;
      },
      ...options,
    });
  } catch (e) {
    console.error("moica-auth: signing not bound:", e && e.message);
    return null;
  }
  const hipkiRequest = readJsonScript(data.requestJsonId);
  const status = section.querySelector("[data-moica-status]");
  const button = section.querySelector("[data-moica-sign-button]");
  const form = section.querySelector("form[data-moica-sign-form]");
  const show = (text, options) => showStatus(status, text, options);
  const start = (event) => {
    if (event) {
      event.preventDefault();
    }
    if (section.getAttribute("aria-busy") === "true" || section.dataset.moicaDone === "true") {
      return;
    }
    const pin = pinInput ? pinInput.value : "";
    if (pinInput) {
      pinInput.value = "";
    }
    if (button) {
      button.disabled = true;
    }
    section.setAttribute("aria-busy", "true");
    show(data.workingText || "…");
    signRequest(client, {
      hipkiRequest,
      requestId: data.requestId,
      pin,
      finishUrl: data.finishUrl || location.pathname,
    })
      .then((answer) => {
        // A request is single-use: once signed, this page signs nothing more.
        section.dataset.moicaDone = "true";
        show(data.successText || "✓");
        const go = section.dispatchEvent(new CustomEvent("moica:signed", {
          detail: answer, cancelable: true, bubbles: true,
        }));
        if (go && answer && typeof answer.redirect === "string") {
          window.location.assign(sameSiteRedirect(answer.redirect));
        }
      })
      .catch((error) => {
        const err = error instanceof MoicaError ? error : client.clientError("unknown");
        // A refusal by the server consumed the request: signing again needs a new one.
        if (err.key === "server_refused") {
          section.dataset.moicaDone = "true";
        }
        show(err.message, {
          error: true,
          link: err.addDomainUrl ? { href: err.addDomainUrl, text: data.addDomainText || err.addDomainUrl } : null,
        });
        section.dispatchEvent(new CustomEvent("moica:error", { detail: err, bubbles: true }));
        if (pinInput && section.dataset.moicaDone !== "true") {
          pinInput.focus();
        }
      })
      .finally(() => {
        section.removeAttribute("aria-busy");
        if (button) {
          button.disabled = section.dataset.moicaDone === "true";
        }
      });
  };
  if (form) {
    form.addEventListener("submit", start);
  } else if (button) {
    button.addEventListener("click", start);
  }
  if (button) {
    // Disabled in the HTML until this runs: without the script nothing is signed.
    button.disabled = false;
  }
  section.dataset.moicaBound = "true";
  return client;
}

/** Bind every `[data-moica-sign]` section in the document. */
export function bindAllSignSections(root = document) {
  return Array.from(root.querySelectorAll("[data-moica-sign]")).map((s) => bindSignSection(s));
}

bindAllSignSections();
