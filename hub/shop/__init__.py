"""The business side: costs and quotes, filament stock, orders and reports."""
