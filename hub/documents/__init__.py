"""Paper for customers and the shop floor: stored quotes and their PDFs, job travellers,
QR labels for spools, parts and printers, and CSV/XLSX exports (front door: ``Documents``)."""
