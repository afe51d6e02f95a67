// The Models page: while a training job is queued or running, ask for its status every two seconds and update its
// stage, member, epoch and log in place; once it has ended, reload so the page shows the gold-set comparison.
(function () {
  const el = document.getElementById("training-job");
  if (!el || el.dataset.active !== "1") return;
  const fields = el.querySelectorAll("[data-field]");
  async function poll() {
    try {
      const response = await fetch(el.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const body = await response.json();
        if (!body.active) {
          window.location.reload();
          return;
        }
        fields.forEach(function (field) {
          const value = body[field.dataset.field];
          if (value === undefined || value === null) return;
          const text = String(value);
          if (field.textContent !== text) {
            const log = field.tagName === "PRE";
            const atEnd = log && field.scrollTop + field.clientHeight >= field.scrollHeight - 4;
            field.textContent = text;
            if (atEnd) field.scrollTop = field.scrollHeight;
          }
        });
      }
    } catch (e) { /* network hiccup: keep polling */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 1000);
})();
