// Many files at once on the upload page. Each file goes in its own request to the upload-file endpoint (the same
// checks as the single-file form), a few at a time, each with its own progress bar and its own outcome as it
// arrives: stored (then classifying, then ready), duplicate of a catalogued work, or refused and why. A refused file
// never stops the others. Without this script the page keeps its single-file form.
(function () {
  "use strict";
  const root = document.getElementById("multi-upload");
  if (!root || !window.FormData || !window.XMLHttpRequest) return;
  const form = document.getElementById("batch-form");
  const input = document.getElementById("batch-files");
  const dropzone = document.getElementById("dropzone");
  const table = document.getElementById("upload-rows");
  const rows = table.querySelector("tbody");
  const start = document.getElementById("upload-start");
  const summary = document.getElementById("upload-summary");
  const endpoint = root.dataset.endpoint;
  const concurrency = Math.max(1, parseInt(root.dataset.concurrency, 10) || 3);
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const items = [];
  root.hidden = false;
  const singleTitle = document.getElementById("single-upload-title");
  if (singleTitle) singleTitle.textContent = "Or one file, with every detail";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => node.setAttribute(key, value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function titleOf(name) {
    return name.replace(/\.[^.]+$/, "").replace(/[_]+/g, " ").trim() || name;
  }

  function addFiles(files) {
    Array.from(files).forEach((file) => {
      const row = el("tr", { class: "upload-row", "data-outcome": "waiting" });
      const title = el("input", { type: "text", maxlength: "300", "aria-label": "Title of " + file.name });
      title.value = titleOf(file.name);
      const bar = el("progress", { max: "100", value: "0", "aria-label": "Upload of " + file.name });
      const outcome = el("td", { class: "outcome" }, "Waiting");
      const nameCell = el("td", { class: "file-name" }, file.name);
      const titleCell = el("td");
      titleCell.appendChild(title);
      const barCell = el("td");
      barCell.appendChild(bar);
      [nameCell, titleCell, barCell, outcome].forEach((cell) => row.appendChild(cell));
      rows.appendChild(row);
      items.push({ file, row, title, bar, outcome, state: "waiting" });
    });
    table.hidden = items.length === 0;
    refresh();
  }

  function refresh() {
    const waiting = items.filter((item) => item.state === "waiting").length;
    const busy = items.some((item) => item.state === "sending");
    start.disabled = waiting === 0 || busy;
    start.textContent = waiting ? `Upload ${waiting} file${waiting === 1 ? "" : "s"}` : "Upload";
    const counts = {};
    items.forEach((item) => {
      counts[item.row.dataset.outcome] = (counts[item.row.dataset.outcome] || 0) + 1;
    });
    summary.textContent = Object.entries(counts)
      .map(([outcome, n]) => `${n} ${outcome}`)
      .join(" · ");
  }

  function show(item, outcome, text, link) {
    item.row.dataset.outcome = outcome;
    item.outcome.textContent = text;
    if (link) {
      item.outcome.appendChild(document.createTextNode(" "));
      item.outcome.appendChild(el("a", { href: link.url }, link.label));
    }
    refresh();
  }

  function answer(item, status, body) {
    item.state = "done";
    if (!body || !body.outcome) {
      const why = status === 403 ? "you may not upload" : status === 0 ? "the connection failed" : `HTTP ${status}`;
      show(item, "refused", `Refused: ${why}.`);
    } else if (body.outcome === "stored") {
      show(item, "classifying", "Stored, classifying…", { url: body.url, label: `#${body.id}` });
      watch(item, body);
    } else if (body.outcome === "duplicate") {
      show(item, "duplicate", `Duplicate of #${body.existing.id}:`, {
        url: body.existing.url,
        label: `“${body.existing.title}”`,
      });
    } else {
      show(item, "refused", `Refused: ${body.message}`);
    }
  }

  // The work is stored; follow its classification until it is ready or failed (as its page does).
  function watch(item, body) {
    let delay = 1500;
    const deadline = Date.now() + 5 * 60 * 1000;
    async function poll() {
      try {
        const response = await fetch(body.status_url, { headers: { Accept: "application/json" } });
        if (response.ok) {
          const status = (await response.json()).status;
          if (status === "ready") return show(item, "ready", "Ready:", { url: body.url, label: `#${body.id}` });
          if (status === "failed") {
            return show(item, "failed", "Stored, classification failed:", { url: body.url, label: `#${body.id}` });
          }
        }
      } catch (e) {
        /* a network hiccup: ask again */
      }
      delay = Math.min(delay * 1.3, 10000);
      if (Date.now() < deadline) setTimeout(poll, delay);
    }
    setTimeout(poll, delay);
  }

  function send(item, shared) {
    return new Promise((resolve) => {
      item.state = "sending";
      item.title.disabled = true;
      show(item, "sending", "Sending…");
      const data = new FormData();
      data.append("image", item.file, item.file.name);
      data.append("title", item.title.value);
      Object.entries(shared).forEach(([key, value]) => data.append(key, value));
      const xhr = new XMLHttpRequest();
      xhr.open("POST", endpoint);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) item.bar.value = Math.round((100 * event.loaded) / event.total);
      });
      xhr.addEventListener("load", () => {
        item.bar.value = 100;
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (e) {
          body = null; // not JSON: logged out (the log-in page) or a proxy's error page
        }
        answer(item, xhr.status, body);
        resolve();
      });
      xhr.addEventListener("error", () => {
        answer(item, 0, null);
        resolve();
      });
      xhr.send(data);
    });
  }

  function sendAll() {
    const shared = {};
    ["artist", "date", "type"].forEach((name) => {
      const field = form.querySelector(`[name=${name}]`);
      if (field) shared[name] = field.value;
    });
    const queue = items.filter((item) => item.state === "waiting");
    queue.forEach((item) => {
      item.state = "queued";
      item.title.disabled = true;
      show(item, "queued", "Queued");
    });
    async function worker() {
      while (queue.length) await send(queue.shift(), shared);
    }
    return Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker)).then(refresh);
  }

  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = ""; // choosing the same files again adds them again (and the server says they are duplicates)
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
    if (event.dataTransfer && event.dataTransfer.files) addFiles(event.dataTransfer.files);
  });
  start.addEventListener("click", sendAll);
  form.addEventListener("submit", (event) => event.preventDefault()); // Enter in a shared field sends nothing
})();
