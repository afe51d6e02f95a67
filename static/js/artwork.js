// While an artwork is pending or processing, ask for its status every second and reload once it changes,
// so the curator sees the type and similar works without reloading by hand.
(function () {
  const el = document.getElementById("artwork");
  if (!el) return;
  const initial = el.dataset.status;
  if (initial !== "pending" && initial !== "processing") return;
  let delay = 1000;
  async function poll() {
    try {
      const response = await fetch(el.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const body = await response.json();
        if (body.status !== initial && !(initial === "pending" && body.status === "processing")) {
          window.location.reload();
          return;
        }
      }
    } catch (e) { /* network hiccup: keep polling */ }
    delay = Math.min(delay * 1.2, 5000);
    setTimeout(poll, delay);
  }
  setTimeout(poll, 700);
})();
