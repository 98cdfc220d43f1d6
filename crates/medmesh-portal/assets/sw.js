// The portal's service worker: it makes the portal installable and keeps the static files
// (stylesheet, scripts, icon) for offline starts, network first so an upgraded node's files
// arrive at once. It never caches a page or an API answer: those hold health data, and
// leave the browser's memory when the tab closes.
const CACHE = 'medmesh-static-v2';
const STATIC = ['/static/portal.css', '/static/portal.js', '/static/htmx.min.js', '/static/icon.svg'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(STATIC)));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k)))));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || !STATIC.includes(url.pathname)) return;
  event.respondWith(fetch(event.request).then((fresh) => {
    const copy = fresh.clone();
    if (fresh.ok) caches.open(CACHE).then((c) => c.put(event.request, copy));
    return fresh;
  }).catch(() => caches.match(event.request)));
});
