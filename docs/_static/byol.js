// A link to a line of a script (byol.html#pytorch-L120) may point into a tab that is not open: open it,
// then show the line.
function showLinkedLine() {
  const line = location.hash ? document.getElementById(location.hash.slice(1)) : null;
  const panel = line && line.closest("[role=tabpanel]");
  if (!panel) return;
  if (panel.hidden) document.querySelector(`[role=tab][aria-controls="${panel.id}"]`)?.click();
  line.scrollIntoView({ block: "center", behavior: "instant" });  // not Furo's smooth scroll through the page
}
window.addEventListener("load", showLinkedLine);
window.addEventListener("hashchange", showLinkedLine);
