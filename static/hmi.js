/* PAS HMI: what the server cannot do for the browser.
 *
 * - keeps the live stream resumable: every EventSource the htmx SSE extension opens
 *   starts from the last event id this page saw (the browser sends Last-Event-ID on
 *   its own reconnects; this covers the extension's re-creations too);
 * - refreshes regions that ask for it (data-refresh-on="<sse event name>", or the name
 *   of a signal fragment the stream swaps in: data-signal) with a leading + trailing
 *   throttle, so the last event of a burst is never lost; a region inside a closed
 *   <details> waits until it is opened;
 * - ticks heartbeat ages and last-active times, marks late nodes (colour and label),
 *   clears 5 s badges, draws the agent page's heartbeat sparkline;
 * - zooms the run timeline to a dragged range; ticks "select all" boxes;
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

  function closedDetails(el) {
    var d = el.closest("details");
    return d !== null && !d.open;
  }

  function refresh(name) {
    var t = throttles[name] || (throttles[name] = { last: 0, timer: null });
    var fire = function () {
      t.last = Date.now();
      t.timer = null;
      document.querySelectorAll("[data-refresh-on]").forEach(function (el) {
        // A collapsed region is not fetched; it loads when opened (see init).
        if (el.getAttribute("data-refresh-on") === name && !closedDetails(el)) {
          htmx.trigger(el, "refresh");
        }
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

  function lateAfterFor(node) {
    var box = node.closest("[data-late-after]");
    return box ? parseFloat(box.dataset.lateAfter || "0") : 0;
  }

  function tickNode(node, now) {
    var ageEl = node.querySelector("[data-age]");
    if (!ageEl) return;
    var label = node.querySelector("[data-status-label]");
    var beat = parseFloat(node.dataset.beat || "");
    var last = parseFloat(node.dataset.last || "");
    var late = false;
    if (!isNaN(beat) && node.dataset.active !== "0") {
      var age = now - beat;
      ageEl.textContent = "♥ " + fmtAge(age);
      var lateAfter = lateAfterFor(node);
      late = lateAfter > 0 && age > lateAfter && node.dataset.status === "working";
    } else if (!isNaN(last)) {
      ageEl.textContent = fmtAge(now - last) + " ago";
    } else {
      ageEl.textContent = "never";
    }
    node.classList.toggle("is-late", late);
    // The words follow the colour: a working node whose beat is overdue reads "late".
    if (label) {
      var words = late ? "late" : node.dataset.label || label.textContent;
      if (label.textContent !== words) label.textContent = words;
    }
  }

  function tickNodes(now) {
    document.querySelectorAll(".node").forEach(function (node) {
      tickNode(node, now);
    });
    document.querySelectorAll("[data-ago]").forEach(function (el) {
      var at = parseFloat(el.dataset.ago);
      if (!isNaN(at)) el.textContent = fmtAge(now - at);
    });
  }

  function tick() {
    var now = serverNow();
    tickNodes(now);
    sparkTick(now);
    bannerRender();
  }

  // -- the agent page's heartbeat sparkline: ages sampled each second while open -----

  var SPARK = {}; // dom id -> [[epoch, age or null], ...]; survives the live refreshes

  function sparkTick(now) {
    document.querySelectorAll("svg[data-spark]").forEach(function (svg) {
      var id = svg.dataset.spark;
      var node = document.getElementById(id);
      var windowS = parseFloat(svg.dataset.window || "120");
      var max = parseFloat(svg.dataset.max || "1");
      var samples = SPARK[id] || (SPARK[id] = []);
      var beat = node ? parseFloat(node.dataset.beat || "") : NaN;
      var busy = node && node.dataset.active !== "0" && !isNaN(beat);
      samples.push([now, busy ? Math.max(0, now - beat) : null]);
      while (samples.length && samples[0][0] < now - windowS) samples.shift();
      var vb = svg.viewBox.baseVal;
      var points = samples
        .filter(function (p) { return p[1] !== null; })
        .map(function (p) {
          var x = vb.width - ((now - p[0]) / windowS) * vb.width;
          var y = vb.height - 2 - (Math.min(p[1], max) / max) * (vb.height - 2);
          return x.toFixed(1) + "," + y.toFixed(1);
        });
      var line = svg.querySelector(".line");
      if (line) line.setAttribute("points", points.join(" "));
    });
  }

  function pollBeats() {
    var box = document.querySelector("[data-beats-url]");
    if (!box || document.hidden) return;
    fetch(box.dataset.beatsUrl, { credentials: "same-origin" })
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

  var bannerExpanded = false;

  function bannerRender() {
    var b = document.getElementById("tron-banner");
    if (!b) return;
    b.classList.toggle("expanded", bannerExpanded);
    var more = b.querySelector("[data-banner-more]");
    if (more) more.setAttribute("aria-expanded", bannerExpanded ? "true" : "false");
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
    // Restarts back off (policy.restart_delay): from the 2nd after a timeout, from the 1st
    // after an error, each at most initial x factor^(n-1) capped, at full jitter.
    var backoff = function (restarts) {
      var total = 0;
      for (var n = 1; n <= restarts; n++) {
        total += Math.min(v("restart_backoff_initial_s") * Math.pow(v("restart_backoff_factor"), n - 1), v("restart_backoff_max_s"));
      }
      return total * (1 + v("restart_backoff_jitter"));
    };
    var stages = v("max_llm_retries") + 1;
    set("[data-worst-total]", duration(attempts * detect + stages * backoff(Math.max(0, v("max_restarts") - 1))));
    set("[data-worst-backoff]", duration(stages * backoff(v("max_restarts"))));
    // Both rules must hold: a timeout shorter than interval x missed beats is the longer one.
    var missed = Math.ceil(v("missed_heartbeat_threshold")) * v("heartbeat_interval_s");
    var warn = form.querySelector("[data-timeout-warning]");
    if (warn) {
      warn.hidden = !(v("timeout_threshold_s") < missed);
      set("[data-warn-timeout]", String(v("timeout_threshold_s")));
      set("[data-warn-missed]", String(Math.round(missed * 10) / 10));
    }
  }

  // -- the run timeline: drag across it to zoom --------------------------------------

  var drag = null;

  function svgX(svg, clientX) {
    var pt = svg.createSVGPoint();
    pt.x = clientX;
    pt.y = 0;
    var m = svg.getScreenCTM();
    return m ? pt.matrixTransform(m.inverse()).x : 0;
  }

  function dragStart(e) {
    var svg = e.target instanceof Element ? e.target.closest("svg.timeline[data-plot-w]") : null;
    if (!svg || e.button !== 0 || e.target.closest("a")) return;
    var x = svgX(svg, e.clientX);
    var rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    rect.setAttribute("class", "sel");
    rect.setAttribute("y", "0");
    rect.setAttribute("height", svg.viewBox.baseVal.height);
    svg.appendChild(rect);
    drag = { svg: svg, x0: x, rect: rect };
    svg.classList.add("dragging");
    e.preventDefault();
  }

  function dragMove(e) {
    if (!drag) return;
    var x = svgX(drag.svg, e.clientX);
    drag.rect.setAttribute("x", Math.min(drag.x0, x));
    drag.rect.setAttribute("width", Math.abs(x - drag.x0));
  }

  function dragEnd(e) {
    if (!drag) return;
    var d = drag;
    drag = null;
    d.svg.classList.remove("dragging");
    d.rect.remove();
    var x1 = svgX(d.svg, e.clientX);
    if (Math.abs(x1 - d.x0) < 6) return;
    var plotX = parseFloat(d.svg.dataset.plotX);
    var plotW = parseFloat(d.svg.dataset.plotW);
    var from = parseFloat(d.svg.dataset.zoomFrom);
    var to = parseFloat(d.svg.dataset.zoomTo);
    var at = function (x) {
      var f = Math.max(0, Math.min(1, (x - plotX) / plotW));
      return Math.round((from + f * (to - from)) * 10) / 10;
    };
    var url = new URL(window.location.href);
    url.searchParams.set("tl_from", at(Math.min(d.x0, x1)));
    url.searchParams.set("tl_to", at(Math.max(d.x0, x1)));
    url.hash = "timeline-card";
    window.location.assign(url.toString());
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
    var beatsBox = document.querySelector("[data-beats-url]");
    if (beatsBox) setInterval(pollBeats, document.querySelector("[data-spark]") ? 2000 : 5000);

    document.addEventListener("click", function (e) {
      var t = e.target;
      if (!(t instanceof Element)) return;
      audio(); // A user gesture lets the page play chimes later.
      document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
        if (!menu.contains(t)) menu.open = false;
      });
      if (t.closest("[data-banner-dismiss]")) {
        localStorage.setItem(DISMISS_KEY, String(Date.now() + DISMISS_MS));
        bannerExpanded = false;
        bannerRender();
      }
      if (t.closest("[data-banner-more]")) {
        bannerExpanded = !bannerExpanded;
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

    document.addEventListener("change", function (e) {
      var t = e.target;
      if (!(t instanceof HTMLInputElement) || !t.dataset.selectAll) return;
      document.querySelectorAll('[data-pick="' + t.dataset.selectAll + '"]').forEach(function (box) {
        box.checked = t.checked;
      });
    });

    // A collapsed region (details[data-lazy]) loads when it is opened.
    document.querySelectorAll("details[data-lazy]").forEach(function (d) {
      d.addEventListener("toggle", function () {
        if (!d.open) return;
        d.querySelectorAll("[data-refresh-on]").forEach(function (el) {
          htmx.trigger(el, "refresh");
        });
      });
    });

    document.addEventListener("mousedown", dragStart);
    document.addEventListener("mousemove", dragMove);
    document.addEventListener("mouseup", dragEnd);

    document.body.addEventListener("htmx:load", function (e) {
      armBadges(e.target);
    });
    document.body.addEventListener("htmx:oobAfterSwap", function (e) {
      armBadges(e.detail && e.detail.target ? e.detail.target : e.target);
      // A signal fragment: the stream says region <name> changed (hmi/fragments.py).
      var name = e.target instanceof Element ? e.target.getAttribute("data-signal") : null;
      if (name) refresh(name);
      bannerRender();
      tickNodes(serverNow());
    });
    // A refreshed region (an agent's page) may hold nodes and ages: fill them at once.
    document.body.addEventListener("htmx:afterSettle", function () {
      tickNodes(serverNow());
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
