// Login: POST JSON to /login (same origin; the server sets an HttpOnly session cookie), then open the view.
const form = document.getElementById("login-form");
const err = document.getElementById("login-error");
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  err.textContent = "";
  const body = JSON.stringify({
    user: document.getElementById("user").value,
    password: document.getElementById("password").value,
  });
  try {
    const r = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    if (r.ok) {
      window.location.assign("/");
      return;
    }
    const j = await r.json().catch(() => ({}));
    err.textContent = j.error || `login failed (${r.status})`;
  } catch (e) {
    err.textContent = `cannot reach the service: ${e}`;
  }
});
