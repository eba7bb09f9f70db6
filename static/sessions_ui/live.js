// Live updates for the staff pages (see docs/ui-sessions-list.md and docs/realtime.md).
// The page subscribes to its topic on the real-time socket (Phoenix protocol, the login cookie
// authenticates it); each event there asks the small JSON endpoint for what changed. The server
// renders every row and message; this script only places the HTML it gets back, so escaping stays
// in Django's templates. Without the socket the page polls that endpoint; with it, polling is only
// a slow safety net. Nothing runs while the tab is hidden.
(function () {
  "use strict";

  function relative(date) {
    var seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 45) return "just now";
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) return minutes + " min ago";
    var hours = Math.round(minutes / 60);
    if (hours < 24) return hours + " h ago";
    var days = Math.round(hours / 24);
    return days === 1 ? "1 day ago" : days + " days ago";
  }

  function refreshRelativeTimes(root) {
    root.querySelectorAll("time[data-relative]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date.getTime())) el.textContent = relative(date);
    });
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function say(text) {
    var status = document.getElementById("live-status");
    if (status) status.textContent = text;
  }

  // A minimal Phoenix channel client: join one topic, keep the heartbeat, call onEvent for each
  // broadcast, report whether it is connected; reconnects with backoff.
  function subscribe(topic, onEvent, onState) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + "/socket/websocket?vsn=2.0.0";
    var ref = 0;
    var attempts = 0;
    var heartbeat = null;

    function connect() {
      var socket;
      try {
        socket = new WebSocket(url);
      } catch (error) {
        onState(false);
        return;
      }
      function send(topicName, event, payload, joinRef) {
        ref += 1;
        socket.send(JSON.stringify([joinRef, String(ref), topicName, event, payload]));
        return String(ref);
      }
      var joinRef = null;
      socket.onopen = function () {
        attempts = 0;
        joinRef = send(topic, "phx_join", {}, String(ref + 1));
        heartbeat = setInterval(function () {
          send("phoenix", "heartbeat", {}, null);
        }, 30000);
      };
      socket.onmessage = function (message) {
        var frame;
        try {
          frame = JSON.parse(message.data);
        } catch (error) {
          return;
        }
        if (frame[2] !== topic) return;
        if (frame[3] === "phx_reply" && frame[1] === joinRef) {
          onState(frame[4] && frame[4].status === "ok");
        } else if (frame[3] !== "phx_reply" && frame[3] !== "phx_close") {
          onEvent(frame[3], frame[4]);
        }
      };
      socket.onclose = function () {
        clearInterval(heartbeat);
        onState(false);
        attempts += 1;
        setTimeout(connect, Math.min(1000 * Math.pow(2, attempts), 30000));
      };
    }

    if (window.WebSocket) connect();
    else onState(false);
  }

  function poller(element, buildUrl, apply) {
    var pollInterval = parseInt(element.dataset.pollMs, 10) || 4000;
    var interval = pollInterval;
    var since = element.dataset.since;
    var failures = 0;
    var timer = null;
    var inFlight = false;
    var again = false;

    function schedule(delay) {
      clearTimeout(timer);
      timer = setTimeout(tick, delay);
    }

    function tick() {
      if (document.hidden) return; // resumed by visibilitychange
      if (inFlight) {
        again = true; // an event arrived mid-request: ask once more when it is done
        return;
      }
      inFlight = true;
      fetch(buildUrl(since), { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.redirected || response.status === 403) {
            throw new Error("signed out");
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          inFlight = false;
          failures = 0;
          since = data.now;
          apply(data);
          refreshRelativeTimes(document);
          schedule(again ? 0 : interval);
          again = false;
        })
        .catch(function (error) {
          inFlight = false;
          failures += 1;
          if (error.message === "signed out") {
            say("Live updates stopped: you are signed out. Reload the page to sign in again.");
            return;
          }
          say("Live updates interrupted; retrying…");
          schedule(Math.min(interval * Math.pow(2, failures), 60000));
        });
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) schedule(0);
    });
    refreshRelativeTimes(document);
    schedule(interval);

    var topic = element.dataset.socketTopic;
    if (topic) {
      subscribe(
        topic,
        function () {
          schedule(0);
        },
        function (connected) {
          // Pushed: poll only as a safety net. Not pushed: poll at the page's own pace.
          interval = connected ? 60000 : pollInterval;
          element.dataset.live = connected ? "socket" : "polling";
          if (connected) schedule(0); // catch up on anything missed while disconnected
        }
      );
    }
  }

  function withParams(base, params) {
    var url = new URL(base, window.location.href);
    Object.keys(params).forEach(function (key) {
      url.searchParams.set(key, params[key]);
    });
    return url.toString();
  }

  // Keeps what the reader is looking at in place while rows are inserted above it.
  function keepingScroll(change) {
    var before = document.documentElement.scrollHeight;
    var scrolled = window.scrollY > 0;
    change();
    if (scrolled) window.scrollBy(0, document.documentElement.scrollHeight - before);
  }

  function sessionsList(region) {
    var body = document.getElementById("session-rows");
    var table = region.querySelector("table.sessions");
    var firstPage = region.dataset.firstPage === "true";
    var byActivity = region.dataset.sort !== "created";
    var notice = document.getElementById("more-on-first-page");

    poller(
      region,
      function (since) {
        return withParams(region.dataset.pollUrl, { since: since });
      },
      function (data) {
        Object.keys(data.counts).forEach(function (key) {
          var el = document.querySelector('[data-count-for="' + (key || "all") + '"]');
          if (el) el.textContent = data.counts[key];
        });
        var changed = 0;
        keepingScroll(function () {
          // Oldest first, so that prepending leaves the newest on top.
          data.rows.slice().reverse().forEach(function (row) {
            var fresh = fromHtml(row.html);
            var existing = body.querySelector('tr[data-session-id="' + row.id + '"]');
            if (existing && existing.dataset.version === fresh.dataset.version) return;
            changed += 1;
            if (!firstPage) {
              if (existing) existing.replaceWith(fresh);
              else notice.hidden = false;
              return;
            }
            if (!byActivity) {
              if (existing) existing.replaceWith(fresh);
              else if (row.new) body.insertBefore(fresh, body.firstElementChild);
              return;
            }
            if (existing) existing.remove();
            body.insertBefore(fresh, body.firstElementChild);
            fresh.classList.add("fresh");
          });
        });
        if (changed) {
          table.hidden = false;
          ["no-match", "no-sessions"].forEach(function (id) {
            var empty = document.getElementById(id);
            if (empty) empty.hidden = true;
          });
          say(changed + (changed === 1 ? " session" : " sessions") + " updated at " + new Date().toLocaleTimeString());
        }
      }
    );
  }

  function sessionThread(thread) {
    poller(
      thread,
      function (since) {
        var pending = Array.prototype.map.call(
          thread.querySelectorAll("[data-delivery-for][data-pending]"),
          function (el) {
            return el.dataset.deliveryFor;
          }
        );
        return withParams(thread.dataset.pollUrl, { since: since, pending: pending.join(",") });
      },
      function (data) {
        var added = 0;
        data.messages.forEach(function (message) {
          if (thread.querySelector('[data-message-id="' + message.id + '"]')) return;
          var item = fromHtml(message.html);
          item.classList.add("fresh");
          thread.appendChild(item);
          added += 1;
        });
        Object.keys(data.delivery).forEach(function (id) {
          var el = thread.querySelector('[data-delivery-for="' + id + '"]');
          if (!el) return;
          var info = data.delivery[id];
          el.textContent = info.label;
          el.className = "delivery delivery-" + info.status;
          if (info.final) el.removeAttribute("data-pending");
        });
        var count = document.getElementById("message-count");
        if (count) count.textContent = data.message_count;
        var badge = document.getElementById("session-status");
        if (badge && badge.dataset.status !== data.status) {
          badge.dataset.status = data.status;
          badge.textContent = data.status_label;
          badge.className = "badge status-" + data.status;
          document.getElementById("status-changed").hidden = false;
        }
        if (added) {
          var empty = document.getElementById("thread-empty");
          if (empty) empty.hidden = true;
          say(added + (added === 1 ? " new message" : " new messages") + " at " + new Date().toLocaleTimeString());
        }
      }
    );
  }

  var region = document.getElementById("sessions-region");
  if (region) sessionsList(region);
  var thread = document.getElementById("thread");
  if (thread) sessionThread(thread);
})();
