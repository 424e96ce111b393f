"""The one way the tests send mail: an SMTP transaction with smtplib on loopback."""

import smtplib


def send(port, sender, rcpts=("bob@example.com",), subject=None, *, message=None,
         body="hello\r\n", helo="client.test", source=None, timeout=30, mail_options=(),
         rcpt_options=(), check=True):
    """One SMTP transaction with the server on 127.0.0.1:`port`, from `sender` to `rcpts`.

    The message is `message` (bytes), or else `Subject: <subject>` over `body`. `helo` is
    the EHLO name (None: smtplib's, the machine's name); `source` a loopback address to
    connect from.

    check=True: smtplib's sendmail, which raises on a refusal (SMTPRecipientsRefused when
    every recipient is refused, SMTPDataError, ...); returns the refused recipients.
    check=False: MAIL, each RCPT and DATA one by one, nothing raised for a refusal; returns
    the reply (code, text) to the first recipient refused, or else to DATA."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    if message is None:
        message = f"Subject: {subject}\r\n\r\n{body}".encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout,
                      source_address=(source, 0) if source else None) as s:
        s.ehlo(helo or "")
        if check:
            return s.sendmail(sender, list(rcpts), message, mail_options=list(mail_options),
                              rcpt_options=list(rcpt_options))
        s.mail(sender, list(mail_options))
        for rcpt in rcpts:
            code, text = s.rcpt(rcpt, list(rcpt_options))
            if code != 250:
                return code, text
        return s.data(message)
