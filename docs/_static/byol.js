// The BYOL page's tabs (sphinx-tabs). The address names the open tab (byol.html?tab=lightning), so that a
// reload, Back or a shared address opens it again; the browser also keeps the last tab chosen, for a link
// from another page that names none. A link to a line of a script (byol.html#pytorch-L120) opens the tab
// that holds it, whatever the address or the browser kept, then shows the line.
const TAB_KEY = "byol-tab";

function tabSlug(tab) {
  return tab.textContent.trim().toLowerCase().replace(/\s+/g, "-");  // "Lightning Distributed": lightning-distributed
}

function linkedLine() {
  let line = null;
  try {
    line = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
  } catch (error) {}  // a malformed address
  return line && line.closest("[role=tabpanel]") ? line : null;
}

function openTab(tab) {
  if (tab.getAttribute("aria-selected") !== "true") tab.click();  // sphinx-tabs shows its panel
}

// Write the open tab into the address (without a new history entry) and into the browser's storage. A
// line's anchor of another tab leaves the address: a reload would open that tab.
function recordTab(tab) {
  const url = new URL(location.href);
  url.searchParams.set("tab", tabSlug(tab));
  const line = linkedLine();
  if (line && line.closest("[role=tabpanel]").id !== tab.getAttribute("aria-controls")) url.hash = "";
  if (url.href !== location.href) history.replaceState(history.state, "", url);
  try {
    localStorage.setItem(TAB_KEY, tabSlug(tab));
  } catch (error) {}  // storage refused (a private window): the address still names the tab
}

function restoreTab() {
  const tabs = Array.from(document.querySelectorAll(".sphinx-tabs-tab"));
  if (!tabs.length) return;
  tabs.forEach((tab) => tab.addEventListener("click", () => recordTab(tab)));
  let wanted = new URLSearchParams(location.search).get("tab");
  if (!wanted) {
    try {
      wanted = localStorage.getItem(TAB_KEY);
    } catch (error) {}
  }
  const line = linkedLine();
  const chosen = line
    ? tabs.find((tab) => tab.getAttribute("aria-controls") === line.closest("[role=tabpanel]").id)
    : tabs.find((tab) => tabSlug(tab) === wanted);
  const tab = chosen || tabs.find((tab) => tab.getAttribute("aria-selected") === "true") || tabs[0];
  openTab(tab);
  recordTab(tab);
}

function showLinkedLine() {
  const line = linkedLine();
  if (!line) return;
  const panel = line.closest("[role=tabpanel]");
  if (panel.hidden) document.querySelector(`[role=tab][aria-controls="${panel.id}"]`)?.click();
  line.scrollIntoView({ block: "center", behavior: "instant" });  // not Furo's smooth scroll through the page
}

// After sphinx-tabs' own DOMContentLoaded handler (tabs.js comes first), which listens to the tabs' clicks.
window.addEventListener("DOMContentLoaded", restoreTab);
window.addEventListener("load", showLinkedLine);
window.addEventListener("hashchange", showLinkedLine);
