// A video visit (/visits/{appointment}), an ES module. The camera and microphone are opened
// first; then the node's WebSocket relays the signalling: a clinician is in the room at once
// and admits the patient from the waiting room; whoever is in the room already offers a
// connection to whoever joins. The media go browser to browser, through the node's TURN
// servers when it says relay only. Nothing is recorded. The chat is the appointment's
// messaging thread, sent through the messaging API and refreshed from its stream.
const root = document.getElementById('visit');
const { appointment: APPOINTMENT, csrf: CSRF, thread: THREAD } = root.dataset;
const ICE = JSON.parse(document.getElementById('ice-config').textContent);
const status = document.getElementById('visit-status');
const remotes = document.getElementById('remote-videos');
const say = (key) => { status.textContent = root.dataset[key]; };

const pcs = new Map();
// For the tests and for anyone curious: the peer connections (getStats()).
window.medmeshVisit = { pcs };
let stream = null;
let ws = null;

function remoteVideo(peer) {
  let v = document.getElementById(`remote-${peer}`);
  if (!v) {
    v = document.createElement('video');
    v.id = `remote-${peer}`;
    v.autoplay = true;
    v.playsInline = true;
    v.setAttribute('aria-label', root.dataset.remoteLabel);
    remotes.append(v);
  }
  return v;
}

const send = (m) => ws?.readyState === WebSocket.OPEN && ws.send(JSON.stringify(m));

function connection(peer) {
  const pc = new RTCPeerConnection(ICE);
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  pc.onicecandidate = (e) => { if (e.candidate) send({ type: 'signal', to: peer, data: { candidate: e.candidate } }); };
  pc.ontrack = (e) => { remoteVideo(peer).srcObject = e.streams[0]; };
  pcs.set(peer, pc);
  return pc;
}

function knock(person) {
  const list = document.getElementById('waiting');
  if (!list || document.getElementById(`knock-${person.peer}`)) return;
  const li = document.createElement('li');
  li.id = `knock-${person.peer}`;
  const name = document.createElement('span');
  name.className = 'what';
  name.textContent = person.name;
  const admit = document.createElement('button');
  admit.type = 'button';
  admit.textContent = root.dataset.msgAdmit;
  admit.setAttribute('aria-label', `${root.dataset.msgAdmit}: ${person.name}`);
  admit.addEventListener('click', () => send({ type: 'admit', peer: person.peer }));
  li.append(name, admit);
  list.append(li);
}

async function handle(m) {
  switch (m.type) {
    case 'welcome': say(m.admitted ? 'msgInRoom' : 'msgWaiting'); break;
    case 'waiting': m.people.forEach(knock); break;
    case 'knock': knock(m); break;
    case 'admitted': say('msgAdmitted'); break;
    case 'full': say('msgFull'); break;
    case 'peer-joined': {
      document.getElementById(`knock-${m.peer}`)?.remove();
      const pc = connection(m.peer);
      await pc.setLocalDescription(await pc.createOffer());
      send({ type: 'signal', to: m.peer, data: { description: pc.localDescription } });
      say('msgInCall');
      break;
    }
    case 'signal': {
      const pc = pcs.get(m.from) ?? connection(m.from);
      if (m.data.description) {
        await pc.setRemoteDescription(m.data.description);
        if (m.data.description.type === 'offer') {
          await pc.setLocalDescription(await pc.createAnswer());
          send({ type: 'signal', to: m.from, data: { description: pc.localDescription } });
        }
        say('msgInCall');
      } else if (m.data.candidate) {
        try {
          await pc.addIceCandidate(m.data.candidate);
        } catch {
          // A candidate for a connection already closed: nothing to add it to.
        }
      }
      break;
    }
    case 'peer-left':
      pcs.get(m.peer)?.close();
      pcs.delete(m.peer);
      document.getElementById(`remote-${m.peer}`)?.remove();
      say('msgPeerLeft');
      break;
    default:
  }
}

async function start() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch {
    say('msgNoMedia');
    return;
  }
  document.getElementById('local-video').srcObject = stream;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${scheme}://${location.host}/visits/${encodeURIComponent(APPOINTMENT)}/signal`);
  // One message at a time, in order: an answer is never set before its offer.
  let queue = Promise.resolve();
  ws.addEventListener('message', (e) => {
    const m = JSON.parse(e.data);
    queue = queue.then(() => handle(m)).catch(() => {});
  });
  ws.addEventListener('close', () => { if (pcs.size === 0) say('msgEnded'); });
}

document.getElementById('hang-up').addEventListener('click', () => {
  send({ type: 'leave' });
  for (const pc of pcs.values()) pc.close();
  pcs.clear();
  stream?.getTracks().forEach((t) => t.stop());
  ws?.close();
  remotes.replaceChildren();
  say('msgEnded');
});

// The chat: the appointment's thread, through the messaging API.
async function refreshChat() {
  const r = await fetch(location.pathname, { headers: { accept: 'text/html' } });
  if (!r.ok) return;
  const fresh = new DOMParser().parseFromString(await r.text(), 'text/html').getElementById('chat-region');
  if (fresh) document.getElementById('chat-region').replaceChildren(...fresh.childNodes);
}
document.getElementById('chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = document.getElementById('chat-text');
  const text = input.value;
  if (!text.trim()) return;
  const r = await fetch(`/api/messages/threads/${encodeURIComponent(THREAD)}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf-token': CSRF },
    body: JSON.stringify({ text }),
  });
  if (r.ok) {
    input.value = '';
    await refreshChat();
  }
});
const live = new EventSource('/messages/live');
live.addEventListener('message', (e) => { if (e.data === THREAD) refreshChat(); });

start();
