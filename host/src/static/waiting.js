(function () {
  "use strict";
  // The waiting room: a k8sTicket-compatible ticket socket (msg#, tkn#) plus
  // wicket's extra message kinds: rid# (resume id), pos# (place in line),
  // eta# (<seconds or ?>@<queue|starting>), sta# (closed, or restart: this
  // wicket process stops, reconnect) and clm# (the proof that binds the
  // ticket's claim to this browser, sent before tkn#).
  var room = document.getElementById("room");
  var app = room.getAttribute("data-app");
  var dns = room.getAttribute("data-dns") === "true";
  var title = room.getAttribute("data-title");
  var KEY = "wicket.rid." + app;
  var DELAYS = [500, 1000, 2000, 3000, 5000];
  var done = false, closed = false, lost = false, restart = false, tries = 0, sentRid = null;
  var pos = 0, eta = null, noteIsMsg = false, proof = "";

  function el(id) { return document.getElementById(id); }
  function put(id, text) { var e = el(id); if (e.textContent !== text) e.textContent = text; }
  function store(value) {
    // sessionStorage is per tab: a second tab waits (and gets a ticket) of its own.
    try {
      if (value === undefined) return sessionStorage.getItem(KEY);
      if (value === null) sessionStorage.removeItem(KEY); else sessionStorage.setItem(KEY, value);
    } catch (e) { /* storage disabled: no resume */ }
    return null;
  }
  function wait(s) {
    if (s === null || isNaN(s)) return "not known yet";
    if (s < 5) return "any moment now";
    if (s < 55) return "about " + Math.round(s / 5) * 5 + " seconds";
    if (s < 90) return "about 1 minute";
    if (s < 3600) return "about " + Math.round(s / 60) + " minutes";
    if (s < 86400) { var h = Math.round(s / 1800) / 2; return "about " + h + (h === 1 ? " hour" : " hours"); }
    return "more than a day";
  }
  function render() {
    if (done || closed || pos < 1) return;
    room.className = "";
    el("notice").hidden = true;
    el("tiles").hidden = false;
    if (noteIsMsg) { put("note", ""); noteIsMsg = false; }
    put("position", String(pos));
    put("eta", eta ? wait(eta.secs) : "…");
    if (lost) return;
    if (eta && eta.starting) put("state", "Starting a new instance for you…");
    else if (eta && eta.secs === 0) put("state", "A slot is opening up…");
    else put("state", pos === 1 ? "Waiting for a free slot — you are next" : "Waiting for a free slot");
  }
  function go(token, pod, uid) {
    // The server turns the token into an HttpOnly cookie and redirects.
    var claim = "/.wicket/claim?token=" + encodeURIComponent(token) + "&c=" + encodeURIComponent(proof);
    if (dns) location.replace(location.protocol + "//" + pod + "." + uid + "." + location.host + "/" + app + claim);
    else location.replace("/" + app + "/" + encodeURIComponent(pod) + "/" + encodeURIComponent(uid) + claim);
  }
  function retry() {
    tries = Math.min(tries + 1, DELAYS.length);
    setTimeout(connect, DELAYS[tries - 1]);
  }
  function onMessage(e) {
    var d = String(e.data), kind = d.slice(0, 4), v = d.slice(4), p;
    if (kind === "tkn#") {
      p = v.split("@");
      if (p.length !== 3) return;
      done = true;
      store(null);
      room.className = "done";
      put("state", "A slot is free — opening " + title + "…");
      go(p[0], p[1], p[2]);
    } else if (kind === "clm#") {
      proof = v;
    } else if (kind === "rid#") {
      if (lost) {
        noteIsMsg = false;
        put("note", v === sentRid ? "Reconnected — you kept your place in line."
                                   : "Reconnected — you were away too long and joined the line again.");
      }
      lost = false;
      store(v);
    } else if (kind === "pos#") {
      pos = parseInt(v, 10) || 0;
      render();
    } else if (kind === "eta#") {
      p = v.split("@");
      eta = { secs: p[0] === "?" ? null : parseInt(p[0], 10), starting: p[1] === "starting" };
      render();
    } else if (kind === "sta#" && v === "closed") {
      closed = true;
      store(null);
      room.className = "done";
      el("tiles").hidden = true;
      put("state", title + " is not available right now.");
      el("notice").hidden = false;
      put("notice", "It may be switched off or being updated. This page checks again every 30 seconds.");
    } else if (kind === "sta#" && v === "restart") {
      restart = true;
    } else if (kind === "sta#" && (v === "paused" || v === "open") && !closed) {
      // The shared ticket store does not answer: nobody gets in meanwhile.
      el("notice").hidden = v === "open";
      put("notice", v === "open" ? "" : "New sessions are paused for a moment while the service recovers. Your place in line is kept.");
    } else if (kind === "msg#" && !closed && !restart && pos < 1) {
      put("note", v);
      noteIsMsg = true;
    }
  }
  function connect() {
    var rid = store();
    sentRid = rid;
    closed = false;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/" + app +
              "/ws?resume" + (rid ? "=" + encodeURIComponent(rid) : "");
    var ws;
    try { ws = new WebSocket(url); } catch (e) { retry(); return; }
    ws.onopen = function () { tries = 0; };
    ws.onmessage = onMessage;
    ws.onclose = function () {
      if (done) return;
      if (closed) { setTimeout(connect, 30000); return; }
      lost = true;
      room.className = "";
      noteIsMsg = false;
      if (restart) {
        // The server said so: reconnect soon (spread, so that a whole
        // waiting room does not arrive at once), keeping the resume id.
        restart = false;
        tries = 0;
        put("state", "The waiting room is restarting — reconnecting…");
        put("note", "Your place in line is kept.");
        setTimeout(connect, 200 + Math.floor(Math.random() * 1000));
        return;
      }
      put("state", "Connection lost — reconnecting…");
      put("note", "Your place in line is kept for a short while.");
      retry();
    };
  }
  connect();
})();
