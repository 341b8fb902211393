// Cadencia's one navigation: inserted after the page header's title on every orchestrator page.
(() => {
  const links = [["/dashboard", "Dashboard"], ["/requests", "Requests"], ["/templates", "Templates"], ["/docs", "API"]];
  const header = document.querySelector("body > header");
  if (!header || header.querySelector("nav.app-nav")) return;
  const nav = document.createElement("nav");
  nav.className = "app-nav";
  nav.setAttribute("aria-label", "Cadencia");
  for (const [href, text] of links) {
    const a = document.createElement("a");
    a.href = href; a.textContent = text;
    if (location.pathname === href || location.pathname.startsWith(href + "/")) a.setAttribute("aria-current", "page");
    nav.append(a);
  }
  const title = header.querySelector("h1");
  if (title) title.after(nav); else header.prepend(nav);
})();
