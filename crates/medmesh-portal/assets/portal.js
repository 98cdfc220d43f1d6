// The portal's one shared script (pages work without it): it tells the node the browser's
// time zone, as minutes east of UTC, so dates are shown in local time from the next page
// on; and it registers the service worker that makes the portal installable.
const offset = String(-new Date().getTimezoneOffset());
if (!document.cookie.split('; ').includes(`medmesh_tz=${offset}`)) {
  document.cookie = `medmesh_tz=${offset}; path=/; max-age=31536000; samesite=lax; secure`;
}
if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => {});
}
