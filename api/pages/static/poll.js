// Follow a running analysis: update its progress in place (announced politely) and show the
// result when it has finished. Without JavaScript the page has a link to reload it instead.
(function () {
  var box = document.getElementById("job");
  if (!box) return;
  var url = box.getAttribute("data-status-url");
  var status = document.getElementById("job-status");
  var bar = document.getElementById("job-progress");
  var stage = document.getElementById("job-stage");
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (job) {
        status.textContent = job.status;
        status.className = "status " + job.status;
        if (bar) bar.value = job.progress;
        if (stage) stage.textContent = job.stage ? "(" + job.stage + ")" : "";
        if (job.status === "queued" || job.status === "running") {
          setTimeout(poll, 1500);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1500);
})();
