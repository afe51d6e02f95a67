// Keyboard for the curation queues (review queue, possible mislabels). Each key presses the ordinary form button
// whose data-key lists it (space-separated, lower case: "k", "a enter", "1"), so the pages work without JavaScript
// too; the next work appears when the page comes back. Active only on a page with a [data-queue-keys] form.
(function () {
  if (!document.querySelector("[data-queue-keys]")) return;
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
