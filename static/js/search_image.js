// Search by image. The chosen (or dropped) file stays in the browser: each search posts it again, with the type
// filter and how many similar works to show, and the server answers only the results part of the page. "Add to the
// catalogue" posts the same file to the upload endpoint (the same checks as any upload); nothing is stored before.
// Without this script the form posts the whole page.
(function () {
  "use strict";
  const root = document.getElementById("image-search");
  const results = document.getElementById("image-search-results");
  if (!root || !results || !window.FormData || !window.fetch) return;
  const form = document.getElementById("image-search-form");
  const input = form.querySelector("input[type=file]");
  const typeSelect = form.querySelector("select[name=type]");
  const dropzone = document.getElementById("image-dropzone");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const uploadEndpoint = root.dataset.uploadEndpoint;
  let file = null;
  let k = 0; // 0: the server's default

  function titleOf(name) {
    return name.replace(/\.[^.]+$/, "").replace(/[_]+/g, " ").trim() || name;
  }

  async function search() {
    if (!file) return;
    const data = new FormData();
    data.append("image", file, file.name);
    if (typeSelect && typeSelect.value) data.append("type", typeSelect.value);
    if (k) data.append("k", String(k));
    results.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(form.action || window.location.href, {
        method: "POST",
        body: data,
        headers: { "X-CSRFToken": csrf, "X-Requested-With": "fetch" },
        credentials: "same-origin",
      });
      results.innerHTML = await response.text(); // rendered and escaped by the server's template
    } catch (e) {
      results.innerHTML = "";
      const problem = document.createElement("p");
      problem.className = "card error";
      problem.textContent = "The search failed: the connection was lost. Try again.";
      results.appendChild(problem);
    }
    results.removeAttribute("aria-busy");
    wire();
  }

  // The results part is new after each search: connect its buttons.
  function wire() {
    const more = document.getElementById("show-more");
    if (more) {
      document.getElementById("show-more-line").hidden = false;
      more.addEventListener("click", () => {
        k = parseInt(more.dataset.k, 10) || 0;
        search();
      });
    }
    const add = document.getElementById("image-add");
    if (add && file) {
      add.hidden = false;
      document.getElementById("image-add-fallback").hidden = true;
      const title = document.getElementById("image-add-title");
      title.value = titleOf(file.name);
      document.getElementById("image-add-button").addEventListener("click", () => addToCatalogue(title.value));
    }
  }

  async function addToCatalogue(title) {
    const button = document.getElementById("image-add-button");
    const outcome = document.getElementById("image-add-outcome");
    button.disabled = true;
    outcome.textContent = "Adding…";
    const data = new FormData();
    data.append("image", file, file.name);
    data.append("title", title);
    let body = null;
    let status = 0;
    try {
      const response = await fetch(uploadEndpoint, {
        method: "POST",
        body: data,
        headers: { "X-CSRFToken": csrf, Accept: "application/json" },
        credentials: "same-origin",
      });
      status = response.status;
      body = await response.json();
    } catch (e) {
      body = null;
    }
    outcome.textContent = "";
    const link = (url, label) => {
      const a = document.createElement("a");
      a.href = url;
      a.textContent = label;
      return a;
    };
    if (body && body.outcome === "stored") {
      outcome.dataset.outcome = "stored";
      outcome.append("Added as ", link(body.url, `#${body.id} “${body.title}”`), "; it is being classified.");
    } else if (body && body.outcome === "duplicate") {
      outcome.dataset.outcome = "duplicate";
      outcome.append("Already in the catalogue: ", link(body.existing.url, `#${body.existing.id} “${body.existing.title}”`));
    } else {
      outcome.dataset.outcome = "refused";
      outcome.textContent = `Not added: ${body && body.message ? body.message : `HTTP ${status || "error"}`}`;
      button.disabled = false;
    }
  }

  function choose(chosen) {
    if (!chosen) return;
    file = chosen;
    k = 0;
    search();
  }

  input.addEventListener("change", () => choose(input.files && input.files[0]));
  // A file chosen while the page was still loading (before this deferred script ran) is searched now.
  if (input.files && input.files[0]) choose(input.files[0]);
  if (typeSelect) {
    typeSelect.addEventListener("change", () => {
      k = 0;
      search();
    });
  }
  form.addEventListener("submit", (event) => {
    if (!file && input.files && input.files[0]) file = input.files[0];
    if (!file) return; // nothing chosen: let the form post, and the server say so
    event.preventDefault();
    search();
  });
  ["dragenter", "dragover"].forEach((type) =>
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    }),
  );
  ["dragleave", "drop"].forEach((type) =>
    dropzone.addEventListener(type, () => dropzone.classList.remove("dragging")),
  );
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    const dropped = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
    choose(dropped);
  });
})();
