// The mail catcher lives with the console, which uses it for the demo; tests share it.
export { MailCatcher as MailServer, type MailMode, type ReceivedMail } from '../../src/console/mail-catcher.js';
