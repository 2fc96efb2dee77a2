// Sync Settings page: advanced settings toggle, mapping tabs, adding and removing
// mapping rows, and a warning before leaving the page with unsaved changes.
(function () {
  "use strict";

  var form = document.getElementById("settings-form");
  if (!form) {
    return;
  }

  // Advanced settings: collapsed until "Show" is clicked.
  var toggle = document.getElementById("advanced-toggle");
  var advanced = document.getElementById("advanced-settings");
  toggle.addEventListener("click", function () {
    var opening = advanced.hidden;
    advanced.hidden = !opening;
    toggle.textContent = opening ? "Hide" : "Show";
    toggle.setAttribute("aria-expanded", String(opening));
  });

  // Tabs show one entity's mappings at a time. The page opens on the first tab with errors.
  var tabButtons = Array.prototype.slice.call(document.querySelectorAll("[data-tab]"));
  var panels = Array.prototype.slice.call(document.querySelectorAll("[data-tab-panel]"));
  function showTab(entity) {
    tabButtons.forEach(function (button) {
      button.setAttribute("aria-selected", String(button.dataset.tab === entity));
    });
    panels.forEach(function (panel) {
      panel.hidden = panel.dataset.tabPanel !== entity;
    });
  }
  tabButtons.forEach(function (button) {
    button.addEventListener("click", function () { showTab(button.dataset.tab); });
  });
  var withErrors = panels.filter(function (panel) { return panel.dataset.hasErrors === "true"; });
  showTab(withErrors.length ? withErrors[0].dataset.tabPanel : "lead");

  // A mapping writes either a lead field or a fixed value, so show only the input in use.
  function updateValueInputs(row) {
    var type = row.querySelector("select[name$='-value_type']");
    var fixed = type && type.value === "fixed";
    row.querySelector(".source-input").hidden = fixed;
    row.querySelector(".fixed-input").hidden = !fixed;
  }
  function prepareRow(row) {
    updateValueInputs(row);
    row.querySelector("select[name$='-value_type']").addEventListener("change", function () {
      updateValueInputs(row);
    });
    row.querySelector(".remove-mapping").addEventListener("click", function () {
      row.querySelector("input[name$='-DELETE']").checked = true;
      row.hidden = true;
      markChanged();
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".mapping-row"), prepareRow);

  // "Add mapping" copies the tab's blank row and renumbers it as the next form.
  var total = form.querySelector("input[name='mappings-TOTAL_FORMS']");
  Array.prototype.forEach.call(document.querySelectorAll(".add-mapping"), function (button) {
    button.addEventListener("click", function () {
      var entity = button.dataset.entity;
      var template = document.getElementById("mapping-template-" + entity);
      var index = parseInt(total.value, 10);
      var holder = document.createElement("tbody");
      holder.innerHTML = template.innerHTML.replace(/__prefix__/g, String(index));
      var row = holder.querySelector(".mapping-row");
      document.querySelector("[data-tab-panel='" + entity + "'] .mapping-rows").appendChild(row);
      total.value = String(index + 1);
      prepareRow(row);
      markChanged();
      row.querySelector("[name$='-column']").focus();
    });
  });

  // Warn before leaving with unsaved changes, except when this form is submitted.
  var changed = false;
  var submitting = false;
  function markChanged() { changed = true; }
  form.addEventListener("input", markChanged);
  form.addEventListener("change", markChanged);
  form.addEventListener("submit", function () { submitting = true; });
  window.addEventListener("beforeunload", function (event) {
    if (changed && !submitting) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // Buttons that need a confirmation, such as Disconnect.
  Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (other) {
    other.addEventListener("submit", function (event) {
      if (!window.confirm(other.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });
})();
