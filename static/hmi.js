/* PAS HMI: what the server cannot do for the browser.
 *
 * - keeps the live stream resumable: every EventSource the htmx SSE extension opens
 *   starts from the last event id this page saw (the browser sends Last-Event-ID on
 *   its own reconnects; this covers the extension's re-creations too);
 * - refreshes regions that ask for it (data-refresh-on="<sse event name>") with a
 *   leading + trailing throttle, so the last event of a burst is never lost;
 * - ticks heartbeat ages, marks late nodes, clears 5 s badges;
 * - shows, dismisses and auto-clears the TRON banner; plays chimes (Web Audio);
 * - does the worst-case maths on the HHMRS settings form as you type.
 */
(function () {
  "use strict";

  var PAS = (window.PAS = window.PAS || {});
  var REFRESH_MS = 750;
  var BADGE_MS = 5000;
  var DISMISS_MS = 5 * 60 * 1000;
  var DISMISS_KEY = "pas.banner.dismissedUntil";
  var CHIME_KEYS = {
    hhmrs_timeout: "on_timeout",
    hhmrs_restart: "on_restart",
    hhmrs_escalation: "on_escalation",
    hhmrs_failure: "on_permanent_failure",
  };

  function readJson(id) {
    var el = document.getElementById(id);
    if (!el) return {};
    try {
      return JSON.parse(el.textContent) || {};
    } catch (e) {
      return {};
    }
  }

  var chime = {};
  var display = {};
  var skewS = 0; // browser clock minus server clock, in seconds

  function serverNow() {
    return Date.now() / 1000 - skewS;
  }

  // -- the live stream ----------------------------------------------------------

  var lastId = null;
  PAS.events = []; // every JSON event received, for tests and debugging (bounded)

  function withParam(url, key, value) {
    var u = new URL(url, window.location.href);
    u.searchParams.set(key, value);
    return u.pathname + u.search;
  }

  function setConn(state, title) {
    var el = document.getElementById("conn");
    if (!el) return;
    el.className = "conn conn-" + state;
    el.title = "live updates: " + title;
    document.body.dataset.stream = state;
  }

  function refreshNames() {
    var names = { hmi: true, run: true };
    document.querySelectorAll("[data-refresh-on]").forEach(function (el) {
      names[el.getAttribute("data-refresh-on")] = true;
    });
    return Object.keys(names);
  }

  var throttles = {};

  function refresh(name) {
    var t = throttles[name] || (throttles[name] = { last: 0, timer: null });
    var fire = function () {
      t.last = Date.now();
      t.timer = null;
      document.querySelectorAll("[data-refresh-on]").forEach(function (el) {
        if (el.getAttribute("data-refresh-on") === name) htmx.trigger(el, "refresh");
      });
    };
    var since = Date.now() - t.last;
    if (since >= REFRESH_MS) fire();
    else if (!t.timer) t.timer = setTimeout(fire, REFRESH_MS - since);
  }

  function onJsonEvent(e) {
    if (e.lastEventId) lastId = e.lastEventId;
    var body;
    try {
      body = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    PAS.events.push(body);
    if (PAS.events.length > 500) PAS.events.shift();
    if (CHIME_KEYS[body.event_type] && !body.replay) {
      bannerFresh();
      chimeFor(body.event_type);
    }
  }

  function wire(source) {
    source.addEventListener("open", function () {
      setConn("ok", "connected");
    });
    source.addEventListener("error", function () {
      setConn("down", "reconnecting");
    });
    Object.keys(CHIME_KEYS).forEach(function (type) {
      source.addEventListener(type, onJsonEvent);
    });
    source.addEventListener("hmi", function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
    });
    refreshNames().forEach(function (name) {
      source.addEventListener(name, function () {
        refresh(name);
      });
    });
  }

  function installEventSource() {
    if (!window.htmx) return;
    // The SSE extension calls htmx.createEventSource(url) for every (re)connection.
    htmx.createEventSource = function (url) {
      if (lastId !== null) url = withParam(url, "last_event_id", lastId);
      var source = new EventSource(url, { withCredentials: true });
      wire(source);
      PAS.source = source;
      return source;
    };
  }

  // -- tree: heartbeat ages, late nodes, badges ---------------------------------

  function fmtAge(s) {
    if (s < 0) s = 0;
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  function tick() {
    var tree = document.querySelector(".tree");
    var lateAfter = tree ? parseFloat(tree.dataset.lateAfter || "0") : 0;
    var now = serverNow();
    document.querySelectorAll(".node").forEach(function (node) {
      var ageEl = node.querySelector("[data-age]");
      var beat = parseFloat(node.dataset.beat || "");
      if (!ageEl) return;
      if (isNaN(beat) || node.dataset.active === "0") {
        ageEl.textContent = "";
        node.classList.remove("is-late");
        return;
      }
      var age = now - beat;
      ageEl.textContent = "♥ " + fmtAge(age);
      var late = lateAfter > 0 && age > lateAfter && node.dataset.status === "working";
      node.classList.toggle("is-late", late);
    });
    bannerRender();
  }

  function pollBeats() {
    var tree = document.querySelector(".tree[data-beats-url]");
    if (!tree || document.hidden) return;
    fetch(tree.dataset.beatsUrl, { credentials: "same-origin" })
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .then(function (body) {
        if (!body) return;
        Object.keys(body.beats).forEach(function (id) {
          var node = document.getElementById(id);
          if (node) node.dataset.beat = body.beats[id];
        });
      })
      .catch(function () {});
  }

  function armBadges(root) {
    var found = [];
    if (root.matches && root.matches(".node")) found.push(root);
    if (root.querySelectorAll) root.querySelectorAll(".node").forEach(function (n) { found.push(n); });
    found.forEach(function (node) {
      var badge = node.querySelector("[data-badge]");
      if (!badge || badge.dataset.armed) return;
      badge.dataset.armed = "1";
      node.classList.add("touched");
      setTimeout(function () {
        badge.remove();
        node.classList.remove("touched");
      }, BADGE_MS);
    });
  }

  // -- the TRON banner -------------------------------------------------------------

  var bannerUntil = 0; // ms (browser clock) until which the banner may show

  function clearAfterS() {
    var v = parseFloat(display.banner_auto_clear_s);
    return isNaN(v) ? 30 : v;
  }

  function bannerInit() {
    var b = document.getElementById("tron-banner");
    if (!b || !b.dataset.last) return;
    var age = serverNow() - parseFloat(b.dataset.last);
    bannerUntil = Date.now() + (clearAfterS() - age) * 1000;
  }

  function bannerFresh() {
    bannerUntil = Date.now() + clearAfterS() * 1000;
    bannerRender();
  }

  function bannerRender() {
    var b = document.getElementById("tron-banner");
    if (!b) return;
    var dismissed = parseInt(localStorage.getItem(DISMISS_KEY) || "0", 10) > Date.now();
    var items = b.querySelector(".tron-item") !== null;
    var fresh = clearAfterS() <= 0 || Date.now() < bannerUntil;
    b.classList.toggle("shown", items && fresh && !dismissed);
  }

  // -- chimes (Web Audio, no files) -------------------------------------------------

  var audioCtx = null;
  var SOUNDS = {
    ping: [[880, 0, 0.35, "sine"]],
    bell: [[660, 0, 0.9, "sine"], [1320, 0, 0.6, "sine"], [1980, 0, 0.3, "sine"]],
    chime: [[784, 0, 0.35, "sine"], [988, 0.14, 0.35, "sine"], [1175, 0.28, 0.55, "sine"]],
    beep: [[1000, 0, 0.12, "square"], [1000, 0.2, 0.12, "square"]],
    alert: [[440, 0, 0.16, "sawtooth"], [660, 0.18, 0.16, "sawtooth"], [440, 0.36, 0.16, "sawtooth"]],
  };

  function audio() {
    var AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    if (!audioCtx) audioCtx = new AC();
    if (audioCtx.state === "suspended") audioCtx.resume();
    return audioCtx;
  }

  function play(sound, volume) {
    var level = Math.max(0, Math.min(100, parseFloat(volume))) / 100;
    var ctx = audio();
    if (!ctx || !(level > 0)) return false;
    var t0 = ctx.currentTime + 0.02;
    (SOUNDS[sound] || SOUNDS.ping).forEach(function (p) {
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.type = p[3];
      osc.frequency.value = p[0];
      gain.gain.setValueAtTime(0.0001, t0 + p[1]);
      gain.gain.exponentialRampToValueAtTime(0.35 * level, t0 + p[1] + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + p[1] + p[2]);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(t0 + p[1]);
      osc.stop(t0 + p[1] + p[2] + 0.05);
    });
    PAS.lastChime = { sound: sound, volume: volume, at: Date.now() };
    return true;
  }

  function chimeFor(type) {
    var key = CHIME_KEYS[type];
    if (!chime.enabled || !key || !chime[key]) return;
    play(chime.sound, chime.volume);
  }
  PAS.play = play;

  // -- settings: the worst case as you type -------------------------------------

  function duration(s) {
    if (!isFinite(s)) return "—";
    if (s < 60) return s.toFixed(1) + "s";
    var m = Math.floor(Math.round(s) / 60);
    if (m < 60) return m + "m " + String(Math.round(s) % 60).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  function worstCase(form) {
    var v = function (name) {
      var el = form.elements[name];
      return el ? parseFloat(el.value) : NaN;
    };
    var attempts = (v("max_restarts") + 1) * (v("max_llm_retries") + 1);
    var detect =
      Math.max(v("timeout_threshold_s"), Math.ceil(v("missed_heartbeat_threshold")) * v("heartbeat_interval_s")) +
      v("sweep_interval_s");
    var set = function (sel, text) {
      var el = form.querySelector(sel);
      if (el) el.textContent = text;
    };
    set("[data-worst-attempts]", isFinite(attempts) ? String(attempts) : "—");
    set("[data-worst-detect]", isFinite(detect) ? String(Math.round(detect * 10) / 10) : "—");
    set("[data-worst-total]", duration(attempts * detect));
  }

  // -- wiring ---------------------------------------------------------------------

  function init() {
    chime = readJson("pas-chime");
    display = readJson("pas-display");
    var now = parseFloat(document.body.dataset.now || "");
    if (!isNaN(now)) skewS = Date.now() / 1000 - now;
    bannerInit();
    tick();
    setInterval(tick, 1000);
    if (document.querySelector(".tree[data-beats-url]")) setInterval(pollBeats, 5000);

    document.addEventListener("click", function (e) {
      var t = e.target;
      if (!(t instanceof Element)) return;
      audio(); // A user gesture lets the page play chimes later.
      if (t.closest("[data-banner-dismiss]")) {
        localStorage.setItem(DISMISS_KEY, String(Date.now() + DISMISS_MS));
        bannerRender();
      }
      if (t.closest("[data-chime-test]")) {
        var form = t.closest("form") || document;
        var sound = form.querySelector("[name=sound]");
        var volume = form.querySelector("[name=volume]");
        play(sound ? sound.value : chime.sound, volume ? volume.value : chime.volume);
      }
    });

    document.querySelectorAll("form[data-worst-case]").forEach(function (form) {
      form.addEventListener("input", function () {
        worstCase(form);
      });
      worstCase(form);
    });

    document.body.addEventListener("htmx:load", function (e) {
      armBadges(e.target);
    });
    document.body.addEventListener("htmx:oobAfterSwap", function (e) {
      armBadges(e.detail && e.detail.target ? e.detail.target : e.target);
      bannerRender();
    });
    document.body.addEventListener("htmx:afterSwap", function (e) {
      var dialog = document.getElementById("actions-dialog");
      if (dialog && e.target && e.target.id === "actions-body" && !dialog.open) dialog.showModal();
    });
  }

  installEventSource();
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
