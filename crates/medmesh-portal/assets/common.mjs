// What the portal's scripts share: IndexedDB in one call, and the page's translated messages.

/** Runs `use(objectStore)` on `storeName` of the IndexedDB database `dbName` (made on first use). */
export function objectStore(dbName, storeName, mode, use) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(dbName, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(storeName);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const req = use(open.result.transaction(storeName, mode).objectStore(storeName));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    };
  });
}

/**
 * The page's messages, rendered translated into `data-msg-*` attributes of `element` (with
 * `{placeholders}` left for the script): `say('msgOpened', { name })`.
 */
export const messagesOf = (element) => (key, values = {}) =>
  (element.dataset[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ''));
