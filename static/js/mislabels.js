// Possible-mislabels keyboard: K keeps the label, A or Enter takes the suggestion, 1–9 choose the numbered type,
// S skips. Each presses the ordinary form button (its data-key lists its keys), so the page works without
// JavaScript too; the next doubtful label appears when the page comes back.
(function () {
  const form = document.getElementById("mislabel-form");
  if (!form) return;
  let sent = false;
  function press(key) {
    const button = document.querySelector('[data-key~="' + key + '"]');
    if (!button || sent) return false;
    sent = true;
    button.classList.add("pressed");
    button.click();
    return true;
  }
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
    const target = event.target;
    const tag = target && target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    // Enter on a focused button or link keeps its native meaning (that button, that link).
    if (event.key === "Enter" && (tag === "BUTTON" || tag === "A")) return;
    const key = event.key.toLowerCase();
    if (!/^([a-z0-9]|enter)$/.test(key)) return; // other keys (and quotes, which would break the selector)
    if (press(key)) event.preventDefault();
  });
})();
