"use strict";
// Drill-down filters for report.html, admitted by its sha256 in the page's CSP.
// Each example row carries data-m: one letter per strategy column (r right, w wrong,
// p partial, - no answer); a filter is one letter per column (* any, n not right).
// The script reads data attributes and writes only `hidden`, `value` and textContent,
// so no data can become markup. A filter can be linked as #drill-<task>=<pattern>,
// which also opens the collapsed table.
(function () {
  function matches(marks, pattern) {
    for (var i = 0; i < pattern.length; i++) {
      var want = pattern.charAt(i), have = marks.charAt(i);
      if (want === "*") continue;
      if (want === "n" ? (have === "r" || have === "-") : have !== want) return false;
    }
    return true;
  }

  function setUp(box) {
    var id = box.getAttribute("data-drill");
    var selects = Array.prototype.slice.call(box.querySelectorAll("select[data-col]"));
    var disagree = box.querySelector("input[data-disagree]");
    var rows = Array.prototype.slice.call(box.querySelectorAll("tbody tr"));
    var count = box.querySelector("[data-count]");
    var details = box.querySelector("details");

    function update() {
      var pattern = selects.map(function (s) { return s.value; }).join("");
      var only = disagree !== null && disagree.checked, shown = 0;
      rows.forEach(function (tr) {
        var keep = matches(tr.getAttribute("data-m") || "", pattern) &&
          (!only || tr.getAttribute("data-d") === "1");
        tr.hidden = !keep;
        if (keep) shown++;
      });
      count.textContent = shown + " of " + rows.length + " examples shown";
    }

    function fromHash() {
      var m = /^#drill-(\d+)=([*rwpn]+)$/.exec(window.location.hash);
      if (m === null || m[1] !== id) return false;
      selects.forEach(function (s, i) { s.value = m[2].charAt(i) || "*"; });
      if (disagree !== null) disagree.checked = false;
      if (details !== null) details.open = true;  // a linked filter shows its rows
      return true;
    }

    selects.forEach(function (s) { s.addEventListener("change", update); });
    if (disagree !== null) disagree.addEventListener("change", update);
    window.addEventListener("hashchange", function () {
      if (fromHash()) { update(); box.scrollIntoView(); }
    });
    box.querySelector(".filters").hidden = false;
    var linked = fromHash();
    update();
    if (linked) box.scrollIntoView();
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-drill]"), setUp);
})();
