/*
 * embed.js - the one-line embed of the redress chat widget.
 *
 *   <script src="/widget/embed.js" data-customer-id="u-10086" data-name="张先生"
 *           data-channel="web" defer></script>
 *
 * A classic script (document.currentScript names the tag) that reads the data-* attributes,
 * loads widget.js from the same folder as an ES module and mounts the widget once the page
 * body exists.  Attributes: data-customer-id (required), data-name, data-channel, data-title,
 * data-bot-name, data-accent, data-server, data-open ("true" opens the panel at once).
 * A bad or missing attribute is reported on the console and nothing is mounted.
 */
(function () {
  'use strict';

  var script = document.currentScript;
  if (!script || !script.src) {
    console.error('[redress] embed.js must be loaded with <script src=".../widget/embed.js">');
    return;
  }
  var d = script.dataset;
  var options = {
    customerId: d.customerId,
    name: d.name,
    channel: d.channel,
    title: d.title,
    botName: d.botName,
    accent: d.accent,
    server: d.server,
    open: d.open === 'true',
  };
  if (!options.customerId) {
    console.error('[redress] embed.js: data-customer-id is required (the company\'s id for this customer)');
    return;
  }

  var widgetUrl = new URL('widget.js', script.src).href;

  function whenBody(fn) {
    if (document.body) fn();
    else document.addEventListener('DOMContentLoaded', fn, { once: true });
  }

  import(widgetUrl)
    .then(function (mod) {
      whenBody(function () {
        try {
          window.redressChat = mod.mountWidget(options);
          document.dispatchEvent(new CustomEvent('redress:ready', { detail: window.redressChat }));
        } catch (e) {
          console.error('[redress] ' + e.message);
        }
      });
    })
    .catch(function (e) {
      console.error('[redress] could not load ' + widgetUrl + ': ' + e);
    });
})();
