// 统一身份认证登录页: poll the login challenge; once `govpki token sign-challenge` has
// answered it, submit the page's own form. Same-origin script file (CSP: no inline script).
(function () {
  "use strict";
  var box = document.getElementById("challenge");
  var form = document.getElementById("challenge-form");
  var status = document.getElementById("challenge-status");
  if (!box || !form || !window.fetch) { return; }
  var url = box.getAttribute("data-state-url");
  var stopped = false;
  function poll() {
    if (stopped) { return; }
    fetch(url, {credentials: "same-origin", cache: "no-store"})
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (body.state === "signed") {
          stopped = true;
          status.className = "sso-status done";
          form.submit();
        } else if (body.state === "refused" || body.state === "expired" || body.state === "unknown") {
          stopped = true;
          status.className = "sso-status failed";
          status.textContent = box.getAttribute("data-expired-text");
          window.location.assign(box.getAttribute("data-refused-url"));
        } else {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
}());
