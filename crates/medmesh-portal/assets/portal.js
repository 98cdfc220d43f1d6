// The portal's one shared script (pages work without it): it tells the node the browser's
// time zone, as minutes east of UTC, so dates are shown in local time from the next page
// on; it registers the service worker that makes the portal installable; and, for a
// patient, it keeps the count of unread notifications in the header live (Server-Sent
// Events from /account/notifications/live; the browser reconnects by itself).
const offset = String(-new Date().getTimezoneOffset());
if (!document.cookie.split('; ').includes(`medmesh_tz=${offset}`)) {
  document.cookie = `medmesh_tz=${offset}; path=/; max-age=31536000; samesite=lax; secure`;
}
if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => {});
}

const live = document.getElementById('inbox-live');
if (live && 'EventSource' in window) {
  const events = new EventSource('/account/notifications/live');
  events.addEventListener('unread', (e) => {
    const count = Number(e.data);
    live.textContent = live.dataset.words.replace('{count}', String(count));
    live.hidden = !(count > 0);
  });
}
