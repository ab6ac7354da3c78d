/**
 * The mobile citizen certificate (行動自然人憑證) part of the login box: binds every
 * <form data-moica-mobile> rendered by {% moica_login_box %}.
 *
 * The citizen types the ID number and chooses "push" (MOI rings the phone) or "QR code"
 * (the phone's app scans the code; the server renders it as an SVG data URI, so nothing
 * here builds markup from the answer). The script then polls POST mobile/status/ at the
 * interval the server gives (never below MOI's 4 s against MOI itself) until the login
 * answer: {"ok": true, "redirect"} or a refusal with a message in the page's language.
 * No PIN or biometric ever touches this page: the phone's app asks for it.
 *
 * Two more modes when the site enables them:
 * - "mweb2app"/"app2app": the answer carries a mobilemoica:// app link (APP-01); the page
 *   shows it as a link the citizen taps (a custom-scheme navigation needs the tap), and
 *   polls as for a QR code;
 * - "web" (WEB-01): the answer carries a form for MOI's page; the page POSTs it there as a
 *   top-level navigation, and MOI's page returns the citizen to the site's callback.
 */

import { readCookie, sameSiteRedirect } from "./moica-auth.js";

const APP_LINK_PREFIX = "mobilemoica://";

const MIN_INTERVAL_MS = 50;

export function bindMobile(form) {
  if (form.dataset.moicaMobileBound === "1") {
    return;
  }
  form.dataset.moicaMobileBound = "1";
  const status = form.querySelector("[data-moica-mobile-status]");
  const qrBox = form.querySelector("[data-moica-mobile-qr]");
  const qrImage = form.querySelector("[data-moica-mobile-qr-image]");
  const ticketText = form.querySelector("[data-moica-mobile-ticket]");
  const appBox = form.querySelector("[data-moica-mobile-app]");
  const appLink = form.querySelector("[data-moica-mobile-app-link]");
  const buttons = Array.from(form.querySelectorAll("button[data-moica-mobile-mode]"));
  const fields = (form.dataset.fields || "").split(",").filter(Boolean);
  let timer = null;
  let generation = 0;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("moica-error", Boolean(isError));
  }

  function busy(on) {
    form.setAttribute("aria-busy", on ? "true" : "false");
    for (const b of buttons) {
      b.disabled = on;
    }
  }

  function csrfToken() {
    const input = form.querySelector('input[name="csrfmiddlewaretoken"]');
    return readCookie(form.dataset.csrfCookieName || "csrftoken") || (input ? input.value : "");
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    return { response, data };
  }

  function hideExtras() {
    qrBox.hidden = true;
    if (appBox) {
      appBox.hidden = true;
      appLink.setAttribute("href", "#");
    }
  }

  /** WEB-01: POST the fields to MOI's page as a top-level navigation (built with the DOM
   * API, never from markup in the answer). */
  function goToMoi(webForm) {
    let url = null;
    try {
      url = new URL(String(webForm.url));
    } catch (e) {
      return false;
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      return false;
    }
    const out = document.createElement("form");
    out.method = "post";
    out.action = url.href;
    out.hidden = true;
    for (const [name, value] of Object.entries(webForm.fields || {})) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = String(name);
      input.value = String(value);
      out.appendChild(input);
    }
    document.body.appendChild(out);
    out.submit();
    return true;
  }

  function fail(data) {
    busy(false);
    hideExtras();
    const message = data && typeof data.message === "string" ? data.message : form.dataset.errorText;
    say(message, true);
  }

  function schedule(seconds, transaction, mine) {
    const ms = Math.max(MIN_INTERVAL_MS, Math.round(Number(seconds) * 1000) || MIN_INTERVAL_MS);
    timer = setTimeout(() => poll(transaction, mine), ms);
  }

  async function poll(transaction, mine) {
    if (mine !== generation) {
      return;
    }
    let answer;
    try {
      answer = await post(form.dataset.statusUrl, { transaction });
    } catch (e) {
      fail(null);
      return;
    }
    if (mine !== generation) {
      return;
    }
    const { response, data } = answer;
    if (response.ok && data && data.state === "pending") {
      schedule(Math.max(Number(data.retry_after) || 0, Number(form.dataset.pollSeconds) || 0), transaction, mine);
      return;
    }
    if (response.ok && data && data.ok === true) {
      say(form.dataset.successText, false);
      location.assign(sameSiteRedirect(data.redirect));
      return;
    }
    fail(data);
  }

  async function start(mode) {
    generation += 1;
    const mine = generation;
    clearTimeout(timer);
    const body = { mode, fields, next: form.dataset.next || "" };
    for (const input of form.querySelectorAll("[data-moica-mobile-field]")) {
      body[input.dataset.moicaMobileField] = input.value.trim();
    }
    if (!body.id_number && mode !== "web") {  // MOI's page asks for it in WEB-01
      say(form.dataset.idRequiredText, true);
      return;
    }
    if (!body.id_number) {
      delete body.id_number;
    }
    busy(true);
    hideExtras();
    say(form.dataset.startingText, false);
    let answer;
    try {
      answer = await post(form.dataset.startUrl, body);
    } catch (e) {
      fail(null);
      return;
    }
    const { response, data } = answer;
    if (!response.ok || !data || typeof data.transaction !== "string") {
      fail(data);
      return;
    }
    if (mode === "web") {
      if (!data.web_form || !goToMoi(data.web_form)) {
        fail(null);
        return;
      }
      say(form.dataset.webText, false);
      return;  // no polling: MOI's page brings the citizen back to the callback
    }
    if (mode === "mweb2app" || mode === "app2app") {
      const link = typeof data.app_link === "string" ? data.app_link : "";
      if (!appBox || !link.startsWith(APP_LINK_PREFIX)) {
        fail(null);
        return;
      }
      appLink.setAttribute("href", link);
      appBox.hidden = false;
      say(form.dataset.appText, false);
    } else if (mode === "qr") {
      if (typeof data.qr === "string" && data.qr.startsWith("data:image/svg+xml")) {
        qrImage.src = data.qr;
        qrImage.hidden = false;
      } else {
        qrImage.hidden = true;
      }
      ticketText.textContent = data.sp_ticket || "";
      qrBox.hidden = false;
      say(form.dataset.scanText, false);
    } else {
      say(form.dataset.pushText, false);
    }
    form.dataset.moicaTransaction = data.transaction;
    schedule(Number(data.poll_interval) || Number(form.dataset.pollSeconds) || 4, data.transaction, mine);
  }

  for (const b of buttons) {
    b.addEventListener("click", (event) => {
      event.preventDefault();
      start(b.dataset.moicaMobileMode);
    });
    b.disabled = false;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start(buttons.length ? buttons[0].dataset.moicaMobileMode : "push");
  });
}

export function bindAllMobile(root = document) {
  for (const form of root.querySelectorAll("form[data-moica-mobile]")) {
    bindMobile(form);
  }
}

bindAllMobile();
