// tokengate's GraphiQL page: starts GraphiQL (loaded before this file from the gateway
// itself) against the GraphQL endpoint this page was served from. Served as a file: the
// page's Content-Security-Policy allows no inline script.
//
// The Headers pane holds bearer secrets, so nothing of it is ever written to the browser's
// storage: GraphiQL is told not to persist headers (and not to offer the switch), and the
// storage it is given drops the headers key and the headers of every saved tab whatever
// GraphiQL asks. Queries and variables are kept, as GraphiQL usually does.
(function () {
  "use strict";

  var root = document.getElementById("graphiql");
  var NAMESPACE = "graphiql:";
  var NEVER_STORED = [NAMESPACE + "headers", NAMESPACE + "shouldPersistHeaders"];
  var TABS = NAMESPACE + "tabState";

  function fail(message) {
    root.textContent = "";
    var p = document.createElement("p");
    p.className = "tg-message";
    p.textContent = message;
    root.appendChild(p);
  }

  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    fail(
      "GraphiQL's files did not load from this gateway. Run `tokengate graphiql install` " +
        "on the machine running the gateway, then reload."
    );
    return;
  }

  // localStorage when the browser allows it, else memory for this page only.
  var backing;
  try {
    backing = window.localStorage;
    backing.getItem(TABS);
  } catch (e) {
    backing = null;
  }
  var memory = {};

  function rawGet(key) {
    return backing ? backing.getItem(key) : Object.prototype.hasOwnProperty.call(memory, key) ? memory[key] : null;
  }
  function rawSet(key, value) {
    if (backing) {
      backing.setItem(key, value);
    } else {
      memory[key] = String(value);
    }
  }
  function rawRemove(key) {
    if (backing) {
      backing.removeItem(key);
    } else {
      delete memory[key];
    }
  }
  function ownKeys() {
    var keys = [];
    var i;
    if (backing) {
      for (i = 0; i < backing.length; i += 1) {
        keys.push(backing.key(i));
      }
    } else {
      keys = Object.keys(memory);
    }
    return keys.filter(function (key) {
      return key && key.indexOf(NAMESPACE) === 0;
    });
  }

  // Tabs are saved without their headers (null, as GraphiQL writes when not persisting).
  function withoutHeaders(value) {
    try {
      var state = JSON.parse(value);
      if (state && Array.isArray(state.tabs)) {
        state.tabs.forEach(function (tab) {
          if (tab && typeof tab === "object") {
            tab.headers = null;
          }
        });
        return JSON.stringify(state);
      }
    } catch (e) {
      // Not JSON: not a tab state GraphiQL could read back either.
    }
    return null;
  }

  var storage = {
    getItem: function (key) {
      return NEVER_STORED.indexOf(key) >= 0 ? null : rawGet(key);
    },
    setItem: function (key, value) {
      if (NEVER_STORED.indexOf(key) >= 0) {
        return;
      }
      if (key === TABS) {
        value = withoutHeaders(value);
        if (value === null) {
          rawRemove(key);
          return;
        }
      }
      rawSet(key, value);
    },
    removeItem: function (key) {
      rawRemove(key);
    },
    clear: function () {
      ownKeys().forEach(rawRemove);
    },
    get length() {
      return ownKeys().length;
    },
  };

  // Whatever an older page may have left behind.
  NEVER_STORED.forEach(rawRemove);
  var saved = rawGet(TABS);
  if (saved !== null) {
    storage.setItem(TABS, saved);
  }

  var fetcher = window.GraphiQL.createFetcher({
    url: window.location.pathname,
    // The page's own origin only; cookies are never what authenticates a query.
    fetch: function (url, init) {
      return window.fetch(url, Object.assign({}, init, { credentials: "omit" }));
    },
  });

  var element = window.React.createElement(window.GraphiQL, {
    fetcher: fetcher,
    storage: storage,
    shouldPersistHeaders: false,
    showPersistHeadersSettings: false,
    isHeadersEditorEnabled: true,
    defaultEditorToolsVisibility: "headers",
    defaultHeaders: '{\n  "Authorization": "Bearer <token>"\n}',
  });
  window.ReactDOM.createRoot(root).render(element);
})();
