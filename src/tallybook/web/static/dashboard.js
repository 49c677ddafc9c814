/* tallybook dashboard: charts from the JSON beside each canvas, clickable drill-down rows and
   the first-sync progress poll. Everything works without it: each chart's figures are in the
   table next to it, each drill-down row holds a link, and the progress page refreshes itself. */
(function () {
  "use strict";
  // Colour-blind-safe palette (Okabe-Ito), darkened where needed for 3:1 against white.
  var PALETTE = ["#0a58b5", "#b35c00", "#176e37", "#a4161a", "#6a3d9a", "#00708a", "#7a5c00", "#c2185b"];

  function drawCharts() {
    if (typeof Chart === "undefined") { return; }
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.getAttribute("data-chart"));
      if (!source) { return; }
      var spec = JSON.parse(source.textContent);
      var reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      new Chart(canvas, {
        type: spec.type,
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (d, i) {
            var colour = PALETTE[i % PALETTE.length];
            return { label: d.label, data: d.data.map(Number), borderColor: colour, backgroundColor: colour,
                     borderWidth: 2, pointRadius: spec.type === "line" ? 2 : 0, tension: 0.15 };
          })
        },
        options: {
          animation: reduce ? false : { duration: 300 }, maintainAspectRatio: false, responsive: true,
          interaction: { mode: "index", intersect: false },
          scales: { y: { beginAtZero: true, stacked: !!spec.stacked, title: { display: !!spec.unit, text: spec.unit } },
                    x: { stacked: !!spec.stacked } },
          plugins: { legend: { display: spec.datasets.length > 1, position: "bottom" } }
        }
      });
    });
  }

  function drillRows() {
    document.querySelectorAll("tr[data-href]").forEach(function (row) {
      row.classList.add("drill");
      row.addEventListener("click", function (event) {
        if (event.target.closest("a, button, input, select")) { return; }
        window.location.href = row.getAttribute("data-href");
      });
    });
  }

  function pollProgress() {
    var box = document.querySelector("[data-progress-url]");
    if (!box) { return; }
    var url = box.getAttribute("data-progress-url");
    var bar = box.querySelector("progress");
    var status = box.querySelector("[data-status]");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.total) { bar.max = s.total; bar.value = s.done; } else { bar.removeAttribute("value"); }
          status.textContent = s.message;
          box.setAttribute("data-state", s.state);
          if (s.finished) {
            var next = box.querySelector("[data-when-done]");
            if (next) { next.hidden = false; }
          } else {
            window.setTimeout(tick, 1000);
          }
        })
        .catch(function () { window.setTimeout(tick, 3000); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(); drillRows(); pollProgress(); });
})();
