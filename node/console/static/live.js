// Live tiles: one WebRTC connection per camera, offered to the console
// (POST /live/offer) with every candidate gathered first, so one exchange
// does. The console answers with the camera's H.264, passed through. Each
// tile then asks every two seconds how its stream is, to say why it ended.
"use strict";
(() => {
  const meta = document.querySelector('meta[name="csrf"]');
  if (!meta) return;
  const csrf = meta.content;
  const say = (tile, text) => { tile.querySelector(".live-state").textContent = text; };

  async function start(video) {
    const tile = video.closest("figure");
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = (ev) => { video.srcObject = ev.streams[0] || new MediaStream([ev.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      if (pc.iceGatheringState === "complete") return done();
      pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") done(); });
      setTimeout(done, 3000);
    });
    const resp = await fetch("/live/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ camera: video.dataset.camera, sdp: pc.localDescription.sdp }),
    });
    if (!resp.ok) { say(tile, await resp.text()); pc.close(); return; }
    const answer = await resp.json();
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    video.addEventListener("playing", () => say(tile, tile.dataset.playing || "▶"), { once: true });
    const poll = setInterval(async () => {
      const r = await fetch("/live/" + answer.id, { headers: { "X-CSRF-Token": csrf } });
      if (!r.ok) { clearInterval(poll); return; }
      const st = await r.json();
      if (st.state === "ended") {
        clearInterval(poll);
        say(tile, st.error || "■");
        pc.close();
      }
    }, 2000);
  }

  for (const v of document.querySelectorAll("video[data-camera]")) {
    start(v).catch((e) => say(v.closest("figure"), String(e)));
  }
})();
