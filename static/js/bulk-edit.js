// The catalogue's bulk edit: counts the ticked works and ticks every work on the page.
(function () {
  "use strict";
  var form = document.getElementById("bulk-edit-form");
  if (!form) return;
  var boxes = function () { return document.querySelectorAll('input[name="ids"][form="bulk-edit-form"]'); };
  var count = document.getElementById("bulk-ticked");
  var update = function () {
    var n = 0;
    boxes().forEach(function (box) { if (box.checked) n += 1; });
    count.textContent = String(n);
  };
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches('input[name="ids"]')) update();
  });
  document.getElementById("bulk-tick-all").addEventListener("click", function () {
    boxes().forEach(function (box) { box.checked = true; });
    update();
  });
})();
