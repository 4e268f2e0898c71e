/*
 * demo.js - behaviour of the demo help-centre page (web/index.html): the FAQ search filter
 * and the "咨询在线客服" button, which opens the embedded chat widget (window.redressChat,
 * set by /widget/embed.js, announced by the "redress:ready" event).
 */
(function () {
  'use strict';

  function setup() {
    var form = document.getElementById('faq-search');
    var input = document.getElementById('q');
    var items = Array.prototype.slice.call(document.querySelectorAll('#faq-list details'));
    var empty = document.getElementById('faq-empty');

    function filter() {
      var words = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      items.forEach(function (d) {
        var text = d.textContent.toLowerCase();
        var hit = words.every(function (w) { return text.indexOf(w) >= 0; });
        d.hidden = !hit;
        if (hit) shown++;
        d.open = hit && words.length > 0 && shown === 1;
      });
      empty.hidden = shown > 0;
    }

    form.addEventListener('submit', function (e) {
      e.preventDefault();
      filter();
    });
    input.addEventListener('input', filter);

    document.getElementById('open-chat').addEventListener('click', function () {
      if (window.redressChat) window.redressChat.open();
    });

    /* a category or hot link opens its answer */
    document.addEventListener('click', function (e) {
      var a = e.target.closest && e.target.closest('a[href^="#faq-"]');
      if (!a) return;
      var d = document.getElementById(a.getAttribute('href').slice(1));
      if (d) d.open = true;
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', setup);
  else setup();
})();
