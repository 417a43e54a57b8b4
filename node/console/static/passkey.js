// Passkeys: enrolling one, and approving with one. The console gives the
// WebAuthn options (for an approval, the challenge is the hash of the exact
// approval command it will sign), the authenticator answers, and the console
// checks and submits; every replica verifies the assertion again.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const status = document.getElementById("passkey-status");
  const say = (msg) => { if (status) status.textContent = msg; };

  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    let answer = {};
    try { answer = await r.json(); } catch (e) { answer = { error: r.status + " " + r.statusText }; }
    if (!r.ok) throw new Error(answer.error || r.statusText);
    return answer;
  }

  function supported() {
    if (window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON) return true;
    say("This browser cannot use passkeys here: open the console at http://localhost:PORT in a current browser.");
    return false;
  }

  async function enrol(form) {
    const name = form.querySelector("#passkey-name").value.trim();
    if (!name) { say("Name the passkey first."); return; }
    say("");
    const opts = await post("/passkeys/begin");
    const cred = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey) });
    const done = await post("/passkeys/finish?name=" + encodeURIComponent(name), cred.toJSON());
    location.assign(done.redirect);
  }

  async function approve(id) {
    say("");
    const base = "/requests/" + encodeURIComponent(id) + "/passkey/";
    const opts = await post(base + "begin");
    const cred = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey) });
    const done = await post(base + "finish", cred.toJSON());
    location.assign(done.redirect);
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    let run = null;
    if (form.dataset.passkeyEnrol) run = () => enrol(form);
    else if (form.dataset.passkey) run = () => approve(form.dataset.passkey);
    if (!run) return;
    ev.preventDefault();
    if (!supported()) return;
    run().catch((e) => say(e.message));
  });
})();
