// A <select data-autosubmit> submits its form as soon as its value changes (the review order, the map's model
// version). Attached here because the Content-Security-Policy allows no inline on...= handlers.
(function () {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) select.form.submit();
    });
  });
})();
