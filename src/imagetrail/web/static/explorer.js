// Optional conveniences; every page works without this file.
(function () {
  "use strict";
  // "/" focuses the search box, unless the user is typing in a field already.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    var box = document.getElementById("search-box") || document.getElementById("header-search-box");
    if (box) {
      event.preventDefault();
      box.focus();
      box.select();
    }
  });
  // "Select all rows" checkbox in the explorer results.
  var all = document.getElementById("select-all");
  if (all) {
    all.hidden = false;
    var label = document.querySelector("label[for='select-all']");
    if (label) label.hidden = false;
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name='row']").forEach(function (box) { box.checked = all.checked; });
    });
  }
})();
