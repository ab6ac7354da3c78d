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
 */

const MIN_INTERVAL_MS = 50;

function readCookie(name) {
  for (const part of (document.cookie || "").split(";")) {
    const [k, ...rest] = part.trim().split("=");
    if (k === name) {
      return decodeURIComponent(rest.join("="));
    }
  }
  return null;
}

/** The login redirect, if it stays on this site; else "/". */
function sameSiteRedirect(value) {
  try {
    const url = new URL(String(value || "/"), location.href);
    if ((url.protocol === "http:" || url.protocol === "https:") && url.origin === location.origin) {
      return url.href;
    }
  } catch (e) {
    /* fall through */
  }
  return "/";
}

export function bindMobile(form) {
  if (form.dataset.moicaMobileBound === "1") {
    return;
  }
  form.dataset.moicaMobileBound = "1";
  const status = form.querySelector("[data-moica-mobile-status]");
  const qrBox = form.querySelector("[data-moica-mobile-qr]");
  const qrImage = form.querySelector("[data-moica-mobile-qr-image]");
  const ticketText = form.querySelector("[data-moica-mobile-ticket]");
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

  function fail(data) {
    busy(false);
    qrBox.hidden = true;
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
    if (!body.id_number) {
      say(form.dataset.idRequiredText, true);
      return;
    }
    busy(true);
    qrBox.hidden = true;
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
    if (mode === "qr") {
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
