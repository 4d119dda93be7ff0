"use strict";
// Sign in: the key is checked against GET /usage (any authenticated call would do) before it is kept.
document.addEventListener("DOMContentLoaded", () => {
  const form = KF.$("login-form"), input = KF.$("api-key"), err = KF.$("login-error");
  const params = new URLSearchParams(location.search);
  let next = params.get("next") || "/ui/jobs";
  if (!/^\/ui\/[A-Za-z0-9/_?=&%.-]*$/.test(next) || next.startsWith("/ui/login")) next = "/ui/jobs";
  if (params.get("reason") === "expired") err.textContent = "Your API key was refused; sign in again.";
  input.focus();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const k = input.value.trim();
    err.textContent = "";
    input.removeAttribute("aria-invalid");
    if (!k) { err.textContent = "Enter your API key."; input.setAttribute("aria-invalid", "true"); return; }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const usage = await KF.api("GET", "/usage", undefined, { key: k });
      KF.setKey(k, usage.tenant);
      location.assign(next);
    } catch (e) {
      input.setAttribute("aria-invalid", "true");
      err.textContent = e.status === 401
        ? "This API key was refused (401 Invalid API key). Check it and try again."
        : "Could not sign in: " + e.message;
      input.select();
    } finally {
      button.disabled = false;
    }
  });
});
