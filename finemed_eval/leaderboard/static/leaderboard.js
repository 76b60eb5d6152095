// Sorting: click a header (numbers first descending = best first, text ascending; click again flips),
// or open the page with #sort=<data-key>[:asc|:desc]. Missing cells always go last.
(function () {
  var table = document.getElementById('leaderboard');
  var heads = table.tHead.rows[0].cells;
  function sortBy(key, dir) {
    var idx = -1;
    for (var i = 0; i < heads.length; i++) if (heads[i].dataset.key === key) idx = i;
    if (idx < 0) return false;
    var numeric = heads[idx].dataset.type === 'number';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx].dataset.value, y = b.cells[idx].dataset.value;
      if (x === '' || y === '') return (x === '') - (y === '');
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return dir === 'desc' ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var j = 0; j < heads.length; j++) heads[j].removeAttribute('aria-sort');
    heads[idx].setAttribute('aria-sort', dir === 'desc' ? 'descending' : 'ascending');
    return true;
  }
  for (var i = 0; i < heads.length; i++) heads[i].addEventListener('click', function (ev) {
    var th = ev.currentTarget, cur = th.getAttribute('aria-sort');
    var dir = cur ? (cur === 'ascending' ? 'desc' : 'asc') : (th.dataset.type === 'number' ? 'desc' : 'asc');
    sortBy(th.dataset.key, dir);
    history.replaceState(null, '', '#sort=' + encodeURIComponent(th.dataset.key) + ':' + dir);
  });
  function fromHash() {
    var m = /^#sort=(.+?)(?::(asc|desc))?$/.exec(location.hash);  // keys may hold ':' and ','
    if (m) sortBy(decodeURIComponent(m[1]), m[2] || 'asc');
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();
