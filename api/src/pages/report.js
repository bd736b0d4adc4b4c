(function () {
  var form = document.getElementById('report');
  if (!form || !window.fetch || !window.FormData || !window.Promise) return;
  var words = JSON.parse(document.getElementById('words').textContent);
  var status = document.getElementById('status');
  var bar = document.getElementById('progress');
  var send = document.getElementById('send');
  var input = document.getElementById('photo');
  // Ids of the photos already uploaded for this form: a retry after a
  // dropped connection uploads only those that did not go through.
  var ids = [];
  var busy = false;
  function say(text) { status.textContent = text; }
  function reason(error) {
    try { return JSON.parse(error.body).errors[0].message; } catch (ignored) { return words.uploadFailed; }
  }
  function wait(attempt) {
    return new Promise(function (done) { setTimeout(done, 1000 * Math.pow(2, attempt)); });
  }
  function upload(file, attempt) {
    return new Promise(function (done, failed) {
      var request = new XMLHttpRequest();
      request.open('POST', words.uploadUrl);
      request.timeout = 120000;
      request.upload.onprogress = function (event) {
        if (event.lengthComputable) {
          bar.hidden = false;
          bar.value = Math.round(100 * event.loaded / event.total);
        }
      };
      request.onload = function () {
        if (request.status === 201) done(JSON.parse(request.responseText));
        else failed({ status: request.status, body: request.responseText });
      };
      request.onerror = request.ontimeout = function () { failed({ status: 0 }); };
      request.send(file);
    }).catch(function (error) {
      // Only a dropped connection is tried again; a refusal is final.
      if (error.status === 0 && attempt < 4) {
        say(words.retrying);
        return wait(attempt).then(function () { return upload(file, attempt + 1); });
      }
      throw error;
    });
  }
  function post(data, attempt) {
    // The form's key goes with every attempt: the server files it once.
    return fetch(form.action, { method: 'POST', body: data, credentials: 'same-origin' })
      .catch(function (error) {
        if (attempt < 5) {
          say(words.retrying);
          return wait(attempt).then(function () { return post(data, attempt + 1); });
        }
        throw error;
      });
  }
  input.addEventListener('change', function () { ids = []; });
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (busy) return;
    busy = true;
    send.disabled = true;
    var files = Array.prototype.slice.call(input.files || [], 0, 3);
    var chain = Promise.resolve();
    files.forEach(function (file, index) {
      chain = chain.then(function () {
        if (ids[index]) return;
        say(words.uploading);
        return upload(file, 0).then(function (answer) {
          ids[index] = answer.photo.id;
          if (answer.suggestedLocation) say(words.locationFound);
        });
      });
    });
    chain.then(function () {
      var data = new FormData(form);
      data.delete('photo');
      data.set('photo_ids', ids.join(','));
      say(words.sending);
      return post(data, 0);
    }).then(function (response) {
      return response.text().then(function (html) {
        document.open();
        document.write(html);
        document.close();
      });
    }).catch(function (error) {
      busy = false;
      send.disabled = false;
      bar.hidden = true;
      say(reason(error));
    });
  });
})();
