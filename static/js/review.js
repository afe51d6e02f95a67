// Review queue keyboard: 1–5 give the numbered type, Enter confirms the model's type, S skips. Each submits the
// ordinary form, so the page works without JavaScript too; the next work appears when the page comes back.
(function () {
  const form = document.getElementById("review-form");
  if (!form) return;
  let sent = false;
  function press(key) {
    const button = document.querySelector('[data-key="' + key + '"]');
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
    // Enter on a focused button keeps its native meaning (that button).
    if (event.key === "Enter" && tag === "BUTTON") return;
    const key = event.key === "Enter" ? "Enter" : event.key.toLowerCase();
    if (press(key)) event.preventDefault();
  });
})();
